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
// Keep-alive connections have the same problem one step later. Closing an
// idle one (what Shutdown and SetKeepAlivesEnabled(false) do) races with
// the client's next request, which may already be on its way: the client
// sees its connection reset or closed with no answer. HTTP's way to end a
// keep-alive connection without that race is to answer one more request
// with "Connection: close"; the client then reconnects, and its new
// connection goes to another worker through the shared queue.
//
// Serve therefore stops in three steps: close the listeners and wait for
// the accept loops to return, so that every accepted connection is known;
// answer every request from then on with "Connection: close", and wait
// until each accepted connection has had its request answered and each
// keep-alive connection has been closed that way (an idle one is given
// idleGrace to send its next request); only then Shutdown, which closes
// what is left idle.
package drain

import (
	"context"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// pollInterval is how often a stopping worker looks whether its last
	// connections are done; it only runs while stopping.
	pollInterval = 5 * time.Millisecond
	// idleGrace is how long a stopping worker keeps an idle keep-alive
	// connection open for the client's next request, which it answers
	// with "Connection: close". A client under load sends it within
	// microseconds; one idle longer is closed, with the race any server
	// closing an idle connection has. It is net/http's own bound on
	// lingering after a close (rstAvoidanceDelay).
	idleGrace = 500 * time.Millisecond
)

// Serve serves srv on every listener until a signal arrives on stop, then
// drains as the package doc says, taking at most wait in all. It returns
// the first error of a listener that failed before stop, or of Shutdown;
// nil after a clean stop. It wraps srv.Handler and sets srv.ConnState,
// calling any hook already there.
func Serve(srv *http.Server, listeners []net.Listener, stop <-chan os.Signal, wait time.Duration) error {
	conns := &openConns{state: map[net.Conn]http.ConnState{}}
	next := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		conns.set(c, s)
		if next != nil {
			next(c, s)
		}
	}
	var stopping atomic.Bool
	handler := srv.Handler
	if handler == nil {
		handler = http.DefaultServeMux
	}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stopping.Load() {
			// net/http closes the connection once this answer is written.
			w.Header().Set("Connection", "close")
		}
		handler.ServeHTTP(w, r)
	})

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

	now := time.Now()
	deadline, idleDeadline := now.Add(wait), now.Add(min(idleGrace, wait))
	stopping.Store(true)
	for _, l := range listeners {
		_ = l.Close()
	}
	// Serve marks an accepted connection New before it accepts again, so
	// once every accept loop has returned, conns knows every connection.
	for ; running > 0; running-- {
		<-served
	}
	for {
		busy, idle := conns.count()
		t := time.Now()
		if busy == 0 && (idle == 0 || t.After(idleDeadline)) || t.After(deadline) {
			break
		}
		time.Sleep(pollInterval)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && failed == nil {
		failed = err
	}
	return failed
}

// openConns is the state of every connection not yet closed.
type openConns struct {
	mu    sync.Mutex
	state map[net.Conn]http.ConnState
}

func (o *openConns) set(c net.Conn, s http.ConnState) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch s {
	case http.StateNew, http.StateActive, http.StateIdle:
		o.state[c] = s
	default: // closed or hijacked: no longer ours to answer
		delete(o.state, c)
	}
}

// count returns how many connections have a request to answer (New:
// accepted, nothing read yet; Active) and how many are idle keep-alive
// connections.
func (o *openConns) count() (busy, idle int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range o.state {
		if s == http.StateIdle {
			idle++
		} else {
			busy++
		}
	}
	return busy, idle
}
