package cfkproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Worker is what Serve gets in a re-executed worker.
type Worker struct {
	// Name is the service's name (CONTROL_FREAK_SERVICE).
	Name string
	// Cmd is the service's cmd as the operator declared it: an array as
	// it is, a string split on white space (no shell quoting). What it
	// means is the App's business; it may be empty.
	Cmd []string
	// Shared is the state Preload wrote, mapped read-only (MAP_SHARED)
	// from the sealed memfd: every worker's Shared is the same physical
	// memory. Writing to it crashes the worker. It is nil when Preload
	// wrote nothing.
	Shared []byte
	// Listeners are the sockets the service asked for (`sockets=`), in
	// order: fds 3, 4, ... of the LISTEN_FDS protocol. An entry is nil when
	// its fd is not a listening stream socket; Files has it anyway.
	Listeners []net.Listener
	// ListenerNames are the names of Listeners (LISTEN_FDNAMES).
	ListenerNames []string
	// Files are the fds 3, 4, ... themselves. They stay open (close-on-
	// exec) and LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID stay set, so a
	// library speaking socket activation (go-systemd's activation) finds
	// them too.
	Files []*os.File
	// Stdin is the tie_stdin_to socket (fd 0) as a listener, or nil.
	Stdin net.Listener
}

// Listener returns the listener named name (LISTEN_FDNAMES), or nil.
func (w *Worker) Listener(name string) net.Listener {
	for i, n := range w.ListenerNames {
		if n == name {
			return w.Listeners[i]
		}
	}
	return nil
}

// AllListeners returns Stdin (if any) and every listener, nils left out:
// what a server that accepts on everything it was given serves.
func (w *Worker) AllListeners() []net.Listener {
	var ls []net.Listener
	if w.Stdin != nil {
		ls = append(ls, w.Stdin)
	}
	for _, l := range w.Listeners {
		if l != nil {
			ls = append(ls, l)
		}
	}
	return ls
}

// reraiseWait is how long a worker that re-raised the signal it caught
// waits for it to take effect before it exits some other way.
const reraiseWait = time.Second

// runWorker is worker mode: it returns the exit code, or does not return
// when the worker dies of the signal that stopped it.
func runWorker(app App) int {
	// LISTEN_PID first, before anything could look at the environment:
	// the proxy could not know this pid before the fork, and the worker
	// is the re-executed proxy binary, so it says it for itself.
	if os.Getenv(envListenFds) != "" {
		os.Setenv(envListenPid, strconv.Itoa(os.Getpid()))
	}
	if os.Getenv(envFail) != "" {
		return 1 // the proxy has logged why
	}
	w, err := adoptWorker()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cfkproxy: %s: %v\n", os.Getenv(envService), err)
		return 1
	}
	if app.Serve == nil {
		fmt.Fprintf(os.Stderr, "cfkproxy: %s: the App has no Serve\n", w.Name)
		return 1
	}

	// TERM (cfkd's stop) and INT cancel ctx, so Serve can finish what it
	// is doing; the worker then dies of that same signal, so cfkd sees a
	// stop by TERM (wait status 15), not an exit. A second signal kills
	// at once.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithCancel(context.Background())
	var caught syscall.Signal
	caughtc := make(chan syscall.Signal, 1)
	go func() {
		s, ok := <-sigs
		if !ok {
			return
		}
		signal.Reset(syscall.SIGTERM, syscall.SIGINT)
		caughtc <- s.(syscall.Signal)
		cancel()
	}()

	err = app.Serve(ctx, w)

	select {
	case caught = <-caughtc:
	default:
	}
	signal.Stop(sigs)
	cancel()
	failed := err != nil && !errors.Is(err, context.Canceled)
	if failed {
		fmt.Fprintf(os.Stderr, "cfkproxy: %s: %v\n", w.Name, err)
	}
	if caught != 0 {
		syscall.Kill(os.Getpid(), caught)
		time.Sleep(reraiseWait)
		return 128 + int(caught) // the signal did not kill: say it as a shell would
	}
	if failed {
		return 1
	}
	return 0
}

// adoptWorker reads what the proxy placed: the shared memory, the sockets,
// the tied stdin. It removes cfkproxy's variables from the environment so
// that nothing Serve runs believes it is a worker.
func adoptWorker() (*Worker, error) {
	sharedVar := os.Getenv(envSharedFd)
	cmdVar := os.Getenv(envCmd)
	for _, k := range []string{envSharedFd, envCmd} {
		os.Unsetenv(k)
	}
	w := &Worker{Name: os.Getenv(envService)}
	if cmdVar != "" {
		if err := json.Unmarshal([]byte(cmdVar), &w.Cmd); err != nil {
			return nil, fmt.Errorf("%s: %w", envCmd, err)
		}
	}

	sharedFd, err := strconv.Atoi(sharedVar)
	if err != nil || sharedFd < 0 {
		return nil, fmt.Errorf("%s=%q is not an fd number", envSharedFd, sharedVar)
	}
	if w.Shared, err = mapShared(sharedFd); err != nil {
		return nil, err
	}

	n := 0
	if v := os.Getenv(envListenFds); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n < 0 || listenFdsStart+n > sharedFd {
			return nil, fmt.Errorf("%s=%q does not match the fds the proxy passed", envListenFds, v)
		}
	}
	names := strings.Split(os.Getenv(envListenFdNames), ":")
	for i := 0; i < n; i++ {
		fd := listenFdsStart + i
		unix.CloseOnExec(fd)
		// O_NONBLOCK before os.NewFile: a File made of an fd that is
		// already non-blocking never clears the flag in Fd (which
		// net.FileListener calls), and the flag belongs to the open file
		// description that cfkd and every worker share. Cleared even for
		// a moment, another Go worker's accept could block in the kernel,
		// where closing the listener cannot wake it.
		unix.SetNonblock(fd, true)
		name := ""
		if i < len(names) {
			name = names[i]
		}
		f := os.NewFile(uintptr(fd), name)
		w.Files = append(w.Files, f)
		w.ListenerNames = append(w.ListenerNames, name)
		w.Listeners = append(w.Listeners, fileListener(f))
	}
	if isListeningSocket(0) {
		// os.Stdin was made by NewFile too, so its Fd leaves the flag
		// as it is; net.FileListener sets O_NONBLOCK on the description.
		w.Stdin = fileListener(os.Stdin)
	}
	return w, nil
}

// fileListener makes a listener of a listening stream socket (on a dup of
// its fd: net.FileListener leaves f open), or returns nil.
func fileListener(f *os.File) net.Listener {
	l, err := net.FileListener(f)
	if err != nil {
		return nil
	}
	return l
}

// isListeningSocket tells whether fd is a socket in the listening state.
func isListeningSocket(fd int) bool {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	return err == nil && v == 1
}
