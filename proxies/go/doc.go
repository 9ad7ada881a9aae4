// Package cfkproxy is ControlFreak's proxy protocol (proxies/PROTOCOL.md)
// for Go programs: a proxy that builds read-only state once and runs a
// pool of workers that all read that one copy.
//
//	func main() {
//		flag.Parse()
//		cfkproxy.Main(cfkproxy.App{
//			Preload: func(w io.Writer) error { return writeTable(w) }, // once, in the proxy
//			Serve: func(ctx context.Context, w *cfkproxy.Worker) error { // in each worker
//				return serve(ctx, w.Shared, w.AllListeners())
//			},
//		})
//	}
//
// cfkd runs the binary as a proxy (`proxy NAME cmd=/path/to/binary`); the
// proxy runs each of its services as a worker, which is the same binary
// executed again. Main tells the two apart by the environment. The example
// directory holds a complete proxy serving lookups into a 200 MiB table.
//
// # Why the workers are re-executed
//
// The Perl and Python proxies fork: the child is a copy of the preloaded
// interpreter and runs the service's code at once. A Go program cannot do
// that. Its runtime is multi-threaded from the start (scheduler, GC
// workers, netpoller), fork(2) copies only the calling thread, and a
// child that runs Go code would find locks held by threads that no longer
// exist; the standard library only ever runs a few raw system calls
// between fork and exec for this reason, and has no os.Fork. So each
// worker is a fork immediately followed by an exec of /proc/self/exe: a new
// process with a fresh runtime that inherits only what the kernel lets
// cross an exec — file descriptors, and memory reached through them.
// /proc/self/exe is the very file the proxy runs, even after a deploy has
// replaced the path on disk, so the code reading the shared bytes is always
// the code that wrote them.
//
// # Why a sealed memfd
//
// Preload writes into a memfd (memfd_create(2), an anonymous file in
// memory) through a buffered writer; the proxy then seals it with
// F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE and F_SEAL_SEAL, and passes
// it to every worker, which maps it read-only and MAP_SHARED as
// Worker.Shared. All the mappings are the same physical pages: the
// kernel's proportional set size (PSS) divides each page among the
// processes that map it, so sixteen workers that have each read every
// byte of a 200 MiB table cost 200 MiB between them, not 3.2 GiB.
//
// The sharing does not decay. A forked interpreter shares its heap
// copy-on-write, but reference counts, GC marks and caches write into the
// objects the workers merely read, and page after page becomes private;
// here nothing can write, so nothing is ever copied. The seals are what
// make that a guarantee rather than a convention: the memory can never
// change under a reader (F_SEAL_WRITE; also no writable shared mapping can
// exist), never shrink (a mapping past the end would SIGBUS), never grow,
// and nobody can remove the seals. A worker checks them and refuses memory
// that lacks any. Mapping a file on disk would share its page cache the
// same way, but anyone able to rewrite the file could change or truncate
// the table under the workers; a Preload may instead copy the file into
// the memfd once (the example's -table flag).
//
// # What a worker gets
//
//   - fd 0: the tie_stdin_to socket (Worker.Stdin), or /dev/null; fds 1 and
//     2: pipes the proxy turns into `out:NAME:` and `err:NAME:` log lines,
//     or /dev/null under ignore_stdout / ignore_stderr.
//   - fds 3, 4, ...: the sockets of the start command's `sockets`, in
//     order, with LISTEN_FDS and LISTEN_FDNAMES (systemd's protocol), as
//     Worker.Listeners and Worker.Files. Then the memfd, which Main maps
//     and closes before Serve runs. Nothing else: every fd of the proxy is
//     close-on-exec.
//   - LISTEN_PID: the proxy cannot know the pid before the fork and Go
//     cannot run code between fork and exec, but the worker is this very
//     binary, so Main sets LISTEN_PID to its own pid first thing. A
//     library speaking socket activation (go-systemd's activation) then
//     accepts the fds too; no exec step through a shell is needed.
//   - The proxy's environment (without the _CFK_ variables of its own
//     fds), the service's env, CONTROL_FREAK_ENABLED=1 and
//     CONTROL_FREAK_SERVICE; the proxy's argv, so flags parse the same in
//     both modes; its own session and process group unless no_new_session.
//
// Serve's context is cancelled by TERM (cfkd's stop) or INT. When Serve
// returns, the worker dies of that same signal, so cfkd sees a stop by
// TERM (wait status 15) and not an exit; a second signal kills at once.
//
// Go's net package puts a socket it wraps in non-blocking mode, and
// O_NONBLOCK belongs to the open file description that cfkd and every
// worker share: declare sockets served by Go workers nonblocking=1, and do
// not share them with programs that accept in blocking mode. A worker sets
// the flag before wrapping fds 3, ..., so that os.File.Fd never clears it,
// even for a moment (another worker's accept would then block in the
// kernel, where closing the listener cannot wake it).
//
// # The proxy
//
// One goroutine owns the workers; it takes commands from cfkd, exits from
// the reaper and signals, in turn. Exactly one place reaps: wait4(-1,
// WNOHANG) on each SIGCHLD, and each exit is reported once as a stopped
// status with the raw wait status; nothing calls exec.Cmd.Wait. Writes to
// cfkd never block the loop: statuses queue without bound (a lost status
// is a service cfkd believes is running forever), log lines up to 1 MiB,
// beyond which they are dropped and counted. A malformed command is an
// `err:-:` log line. A start naming a socket the proxy was not given is
// logged under the service's name and its worker exits 1 at once, so that
// cfkd's respawn rules apply. On TERM, INT, HUP, or EOF on the command
// pipe (cfkd is gone), the proxy sends TERM to every worker's group,
// reports their exits, KILLs what is left after 5 seconds and exits 0.
//
// # Limits
//
//   - The shared state is bytes: fixed-size records, offsets, an index
//     laid out flat, anything a worker reads in place or decodes lazily.
//     Go pointers, maps and heap objects cannot cross an exec; a worker
//     that decodes the table into its heap pays for its own copy again.
//   - Each worker pays its own Go runtime and heap. Measured with the
//     example after runtime.GC and debug.FreeOSMemory: about 1.6 MiB of
//     private memory per worker, plus its share of the binary's text
//     (one copy in the page cache for the proxy and all workers).
//   - Page tables are per process and not in PSS: mapping a table costs
//     each worker 8 bytes per 4 KiB page it touches (0.2%, 400 KiB for
//     200 MiB), unless shmem huge pages are enabled (shmem_enabled).
//   - Shared is read-only: a write to it crashes the worker. Mutable
//     state lives in each worker's heap.
//   - Starting a worker is an exec and a runtime start (milliseconds), not
//     a fork, and only Shared is inherited: connection pools, caches and
//     anything else built at run time are built again by each worker.
//   - The state is built once per proxy; new data means a new proxy
//     (proxydown / proxyup). The memfd is RAM (Shmem) that only swap can
//     reclaim, charged to the proxy's memory cgroup, which wrote it.
//   - Main must run before anything that starts child processes or waits
//     for them; once Preload has returned, the proxy's reaper waits for
//     every child of the proxy.
//
// BENCH.md has the measurements.
//
// # Files
//
//   - app.go: App, Main and the choice between proxy and worker.
//   - protocol.go: the command and status lines, the log line framing.
//   - shared.go: building, sealing and mapping the memfd.
//   - proxy.go: the proxy's loop, the reaper, shutdown.
//   - spawn.go: a worker's fd table, environment and exec.
//   - output.go: the non-blocking writers to cfkd and the output readers.
//   - worker.go: Worker and worker mode.
package cfkproxy
