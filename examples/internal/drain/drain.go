// Package drain serves HTTP on listening sockets shared with other
// workers, and stops without dropping a connection it has accepted.
//
// Under cfkd, many workers accept from one listening socket. What a worker
// has taken off the shared accept queue, no other worker can get back, so
// a worker that stops must answer every connection it accepted. net/http's
// Server.Shutdown does not: it closes the listeners, and then any
// connection whose request it reads after Shutdown began is closed
// unanswered (the server checks "shutting down" after each request it
// reads). A connection accepted a moment before TERM is exactly that, and
// under load there are always a few: the client sees the connection close
// with no answer.
//
// Serve therefore stops in three steps: turn keep-alive off (which also
// closes the idle keep-alive connections), close the listeners and wait for
// the accept loops to return, so that every accepted connection is known;
// wait until each of those has had its request answered; only then Shutdown.
package drain

import (
	"context"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// pollInterval is how often a stopping worker looks whether its last
// accepted connections have been answered; it only runs while stopping.
const pollInterval = 5 * time.Millisecond

// Serve serves srv on every listener until a signal arrives on stop, then
// drains as the package doc says, taking at most wait in all. It returns
// the first error of a listener that failed before stop, or of Shutdown;
// nil after a clean stop. It sets srv.ConnState, calling any hook already
// there.
func Serve(srv *http.Server, listeners []net.Listener, stop <-chan os.Signal, wait time.Duration) error {
	busy := &busyConns{conns: map[net.Conn]bool{}}
	next := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		busy.set(c, s)
		if next != nil {
			next(c, s)
		}
	}

	served := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { served <- srv.Serve(l) }()
	}
	running := len(listeners)
	var failed error
	select {
	case <-stop:
	case failed = <-served: // one listener failed: stop serving on all
		running--
	}

	deadline := time.Now().Add(wait)
	srv.SetKeepAlivesEnabled(false)
	for _, l := range listeners {
		_ = l.Close()
	}
	// Serve marks an accepted connection New before it accepts again, so
	// once every accept loop has returned, busy knows every connection.
	for ; running > 0; running-- {
		<-served
	}
	for busy.any() && time.Now().Before(deadline) {
		time.Sleep(pollInterval)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && failed == nil {
		failed = err
	}
	return failed
}

// busyConns is the set of accepted connections whose request is not
// answered yet: New (accepted, nothing read) or Active.
type busyConns struct {
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func (b *busyConns) set(c net.Conn, s http.ConnState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s == http.StateNew || s == http.StateActive {
		b.conns[c] = true
	} else {
		delete(b.conns, c)
	}
}

func (b *busyConns) any() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns) > 0
}
