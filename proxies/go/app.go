package cfkproxy

import (
	"context"
	"fmt"
	"io"
	"os"
)

// App is a Go proxy program: the state it builds once and the code each
// worker runs over it.
type App struct {
	// Preload runs once, in the proxy, before it reads any command. It
	// writes the state to share to w, which is buffered and writes
	// straight into the memfd, so the state never needs to be whole in
	// the proxy's heap. Whatever it writes is, byte for byte, every
	// worker's Worker.Shared. Preload may be nil (no shared state). An
	// error stops the proxy (exit 1) before any worker starts.
	//
	// Preload may start and wait for child processes of its own; once it
	// returns, the proxy's reaper waits for every child, so nothing else
	// in the proxy may.
	Preload func(w io.Writer) error

	// Serve runs in each worker, a fresh exec of the same binary, with
	// the shared state and the sockets the service asked for. ctx is
	// cancelled when the worker gets TERM (cfkd's stop) or INT; Serve
	// should then return promptly, and the worker dies of that signal as
	// cfkd expects. Returning nil otherwise exits 0; an error is printed
	// on stderr (an `err:NAME:` log line) and exits 1.
	Serve func(ctx context.Context, w *Worker) error
}

// Main runs app as cfkd's proxy or as one of its workers, as the
// environment says, and never returns. Call it at the start of main(),
// after flags are parsed (the workers get the proxy's argv, so flags
// parse the same in both) and before anything starts goroutines that
// fork, wait for children or touch the sockets.
//
// Run by cfkd (`_CFK_COMMAND_FD` set), it is the proxy; re-executed by the
// proxy (`_CFKPROXY_SHARED_FD` set), it is a worker. Run any other way it
// prints why it cannot run and exits 2.
func Main(app App) {
	os.Exit(run(app))
}

func run(app App) int {
	switch {
	case os.Getenv(envSharedFd) != "" || os.Getenv(envFail) != "":
		return runWorker(app)
	case os.Getenv(envCommandFd) != "":
		return runProxy(app)
	default:
		fmt.Fprintf(os.Stderr, "%s is a ControlFreak proxy: cfkd runs it (proxy NAME cmd=%s), it does not run alone\n", os.Args[0], os.Args[0])
		return 2
	}
}

// IsWorker tells whether this process is a worker re-executed by the
// proxy, for programs that do some setup only in one mode before Main.
func IsWorker() bool {
	return os.Getenv(envSharedFd) != "" || os.Getenv(envFail) != ""
}
