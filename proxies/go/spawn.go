package cfkproxy

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// selfExe is what a worker execs: the proxy's own binary. /proc/self/exe
// is resolved by the kernel in the forked child, which is still the
// proxy, so the worker runs the very inode the proxy runs even after a
// deploy replaced the file on disk: the code that reads the shared layout
// is always the code that wrote it.
const selfExe = "/proc/self/exe"

// worker is a started service.
type worker struct {
	name       string
	pid        int
	newSession bool // it leads its own process group, which stop signals
}

// spawnPlan is everything one worker needs, decided before the fork.
type spawnPlan struct {
	env        []string
	files      []uintptr // becomes the worker's fds 0, 1, 2, 3, ...
	setsid     bool
	outPipe    *os.File // the proxy's read end of the worker's stdout, or nil
	errPipe    *os.File // and of its stderr
	closeAfter []int    // the worker's ends of the pipes, closed in the proxy after the fork
}

// plan lays out the worker of a start command: stdin is the tied socket
// or /dev/null, stdout and stderr are pipes to the proxy or /dev/null,
// the asked sockets are fds 3, 4, ... (systemd's order), and the sealed
// memfd comes right after them. When the command cannot be honoured (an
// unknown socket), the proxy logs why and the worker is still started,
// but told to exit 1 at once, so that cfkd sees a start that fails, as it
// would under a Perl proxy whose `do FILE` fails, and its respawn rules
// apply.
func (p *proxy) plan(c *command) (*spawnPlan, error) {
	var fail []string
	stdin := p.devNull
	if c.tieStdinTo != "" {
		if fd, ok := p.sockets[c.tieStdinTo]; ok {
			stdin = fd
		} else {
			fail = append(fail, fmt.Sprintf("tie_stdin_to: socket %q is not passed to the proxy", c.tieStdinTo))
		}
	}
	files := []uintptr{uintptr(stdin), uintptr(p.devNull), uintptr(p.devNull)}
	var names []string
	for _, s := range c.sockets {
		fd, ok := p.sockets[s]
		if !ok {
			fail = append(fail, fmt.Sprintf("sockets: socket %q is not passed to the proxy", s))
			continue
		}
		files = append(files, uintptr(fd))
		names = append(names, s)
	}
	sharedFd := len(files)
	files = append(files, p.shared.Fd())

	pl := &spawnPlan{files: files, setsid: c.newSession}
	for i, ignore := range []bool{c.ignoreStdout, c.ignoreStderr} {
		if ignore {
			continue
		}
		var fds [2]int
		if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
			pl.abandon()
			return nil, fmt.Errorf("pipe: %w", err)
		}
		// Only the proxy's end is non-blocking (it is its own open file
		// description), so the worker's stdout stays an ordinary pipe.
		unix.SetNonblock(fds[0], true)
		r := os.NewFile(uintptr(fds[0]), c.name+" output")
		if i == 0 {
			pl.outPipe = r
		} else {
			pl.errPipe = r
		}
		pl.closeAfter = append(pl.closeAfter, fds[1])
		files[1+i] = uintptr(fds[1])
	}

	cmdJSON, _ := json.Marshal(c.cmd)
	if c.cmd == nil {
		cmdJSON = []byte("[]")
	}
	env := make([]string, 0, len(p.env)+len(c.env)+8)
	env = append(env, p.env...)
	env = append(env, workerEnv(c.env)...)
	env = append(env, envEnabled+"=1", envService+"="+c.name)
	if len(names) > 0 {
		// LISTEN_PID cannot be known before the fork, and Go cannot run
		// code between fork and exec: the worker, which is this binary,
		// sets it to its own pid first thing in Main.
		env = append(env,
			envListenFds+"="+strconv.Itoa(len(names)),
			envListenFdNames+"="+strings.Join(names, ":"))
	}
	env = append(env, envSharedFd+"="+strconv.Itoa(sharedFd), envCmd+"="+string(cmdJSON))
	if len(fail) > 0 {
		// Said here, under the service's name, since the worker's
		// stderr may be ignored; the worker just exits 1.
		p.logf(logErr, c.name, "cannot start: %s", strings.Join(fail, "; "))
		env = append(env, envFail+"=1")
	}
	pl.env = dedupEnv(env)
	return pl, nil
}

// abandon closes the pipes of a plan that will not be started.
func (pl *spawnPlan) abandon() {
	for _, f := range []*os.File{pl.outPipe, pl.errPipe} {
		if f != nil {
			f.Close()
		}
	}
	for _, fd := range pl.closeAfter {
		unix.Close(fd)
	}
}

// spawn forks and execs the worker. The pid is reaped by the proxy's
// reaper, never waited for here.
func (p *proxy) spawn(c *command, pl *spawnPlan) (*worker, error) {
	pid, err := syscall.ForkExec(selfExe, p.argv, &syscall.ProcAttr{
		Env:   pl.env,
		Files: pl.files,
		Sys:   &syscall.SysProcAttr{Setsid: pl.setsid},
	})
	for _, fd := range pl.closeAfter {
		unix.Close(fd)
	}
	if err != nil {
		for _, f := range []*os.File{pl.outPipe, pl.errPipe} {
			if f != nil {
				f.Close()
			}
		}
		return nil, fmt.Errorf("cannot start %s: %w", c.name, err)
	}
	if pl.outPipe != nil {
		go copyLines(pl.outPipe, logOut, c.name, p.log)
	}
	if pl.errPipe != nil {
		go copyLines(pl.errPipe, logErr, c.name, p.log)
	}
	return &worker{name: c.name, pid: pid, newSession: pl.setsid}, nil
}

// workerEnv is an environment as a worker may inherit it: without cfkd's
// pipe and socket numbers (those fds are not the worker's), socket
// activation variables that do not describe the worker's fds, and
// cfkproxy's own variables. It filters both the proxy's environment and
// a service's env, which must not fool the worker about its fds either.
func workerEnv(environ []string) []string {
	var env []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "_CFK_"),
			strings.HasPrefix(k, "_CFKPROXY_"),
			k == envListenFds, k == envListenFdNames, k == envListenPid:
			continue
		}
		env = append(env, kv)
	}
	return env
}

// dedupEnv keeps the last setting of each variable, in first-seen order.
func dedupEnv(env []string) []string {
	idx := make(map[string]int, len(env))
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}
