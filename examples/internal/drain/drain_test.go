package drain

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// server runs Serve on a loopback listener; states gets every connection
// state change, stopped the result of Serve.
func server(t *testing.T, wait time.Duration) (addr string, states <-chan http.ConnState, stop chan<- os.Signal, stopped <-chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st := make(chan http.ConnState, 100)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "answered\n") }),
		// Serve must keep a hook that was already set.
		ConnState: func(_ net.Conn, s http.ConnState) { st <- s },
	}
	sig := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(srv, []net.Listener{l}, sig, wait) }()
	t.Cleanup(func() {
		select {
		case sig <- syscall.SIGTERM:
		default:
		}
	})
	return l.Addr().String(), st, sig, done
}

func expectState(t *testing.T, states <-chan http.ConnState, want http.ConnState) {
	t.Helper()
	for {
		select {
		case s := <-states:
			if s == want {
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no connection reached %v", want)
		}
	}
}

// The case http.Server.Shutdown gets wrong: a connection accepted before
// the stop, whose request arrives after it, is answered, not closed.
func TestAcceptedBeforeStopIsAnswered(t *testing.T) {
	addr, states, stop, stopped := server(t, 5*time.Second)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectState(t, states, http.StateNew)

	stop <- syscall.SIGTERM
	// The listener closes at once: new connections are refused (under cfkd
	// they would wait in the shared queue for another worker).
	waitFor(t, "the listener to close", func() bool {
		c2, err := net.Dial("tcp", addr)
		if err == nil {
			c2.Close()
		}
		return err != nil
	})
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) with a request still to answer", err)
	default:
	}

	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("the accepted connection was dropped: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "answered\n" {
		t.Fatalf("answer %d %q", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Error("a stopping server kept the connection alive")
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return once the last request was answered")
	}
}

// keepAliveIdle opens a connection, has one request answered on it, and
// waits until the server holds it idle for the next one.
func keepAliveIdle(t *testing.T, addr string, states <-chan http.ConnState) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.Close {
		t.Fatal("a running server closed a keep-alive connection")
	}
	expectState(t, states, http.StateIdle)
	return c, r
}

// An idle keep-alive connection is not closed under the client's feet at
// the stop (its next request may be on its way): that request is answered
// with "Connection: close", then the connection is closed and the stop
// completes.
func TestIdleKeepAliveAnsweredWithClose(t *testing.T) {
	addr, states, stop, stopped := server(t, 5*time.Second)
	c, r := keepAliveIdle(t, addr, states)

	stop <- syscall.SIGTERM
	waitFor(t, "the listener to close", func() bool {
		c2, err := net.Dial("tcp", addr)
		if err == nil {
			c2.Close()
		}
		return err != nil
	})
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("the keep-alive connection was dropped: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "answered\n" {
		t.Fatalf("answer %d %q", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Error("a stopping server did not say Connection: close")
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return once its last connection was closed")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadByte(); err == nil {
		t.Error("the connection is still open")
	}
}

// An idle keep-alive connection that sends nothing more is closed after
// idleGrace: it holds the stop up no longer than that.
func TestIdleKeepAliveClosedAfterGrace(t *testing.T) {
	const wait = 5 * time.Second
	addr, states, stop, stopped := server(t, wait)
	c, r := keepAliveIdle(t, addr, states)

	start := time.Now()
	stop <- syscall.SIGTERM
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("an idle connection held up the stop")
	}
	if d := time.Since(start); d < idleGrace || d > wait/2 {
		t.Errorf("stop took %v; want idleGrace (%v), not much more", d, idleGrace)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadByte(); err == nil {
		t.Error("the idle connection is still open")
	}
}

// A client that connects and never sends holds the stop up for wait, no
// longer.
func TestSilentConnectionBoundedByWait(t *testing.T) {
	const wait = 300 * time.Millisecond
	addr, states, stop, stopped := server(t, wait)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectState(t, states, http.StateNew)
	start := time.Now()
	stop <- syscall.SIGTERM
	select {
	case err := <-stopped:
		if err != nil && !strings.Contains(err.Error(), "deadline") {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a silent connection held the stop beyond wait")
	}
	if d := time.Since(start); d < wait {
		t.Errorf("gave up after %v, before wait (%v)", d, wait)
	}
}
