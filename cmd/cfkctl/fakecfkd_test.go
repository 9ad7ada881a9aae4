package main

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// reply is the fake cfkd's answer to one line: body lines then OK, or an
// ERROR, or a hang-up without any answer.
type reply struct {
	body   []string
	err    string // non-empty: answer `ERROR: err`
	hangup bool   // close the connection instead of answering
}

// fakeCfkd is a management socket that speaks cfkd's framing (body lines
// end in "\n", the final OK or ERROR line in "\r\n") and records what it
// was sent.
type fakeCfkd struct {
	t       *testing.T
	path    string
	ln      net.Listener
	answers map[string]reply // by request line; others get an ERROR

	mu     sync.Mutex
	lines  []string // every line received, `exit` included
	closed int      // connections closed by the client
}

// newFakeCfkd listens on a unix socket in a fresh directory. The path is
// kept short: unix socket paths are limited to about 100 bytes.
func newFakeCfkd(t *testing.T, answers map[string]reply) *fakeCfkd {
	t.Helper()
	dir, err := os.MkdirTemp("", "cfkctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeCfkd{t: t, path: filepath.Join(dir, "sock"), answers: answers}
	f.ln, err = net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		f.ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := f.ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.serve(conn)
			}()
		}
	}()
	return f
}

// address is the fake's address as cfkctl takes it.
func (f *fakeCfkd) address() string { return "unix:" + f.path }

func (f *fakeCfkd) serve(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			f.mu.Lock()
			f.closed++
			f.mu.Unlock()
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.mu.Lock()
		f.lines = append(f.lines, line)
		f.mu.Unlock()
		if line == "exit" {
			f.mu.Lock()
			f.closed++
			f.mu.Unlock()
			return
		}
		rep, ok := f.answers[line]
		if !ok {
			rep = reply{err: "unknown command '" + line + "'"}
		}
		if rep.hangup {
			return
		}
		var b strings.Builder
		for _, l := range rep.body {
			b.WriteString(l + "\n")
		}
		if rep.err != "" {
			b.WriteString("ERROR: " + rep.err + "\r\n")
		} else {
			b.WriteString("OK\r\n")
		}
		if _, err := conn.Write([]byte(b.String())); err != nil {
			return
		}
	}
}

// requests returns the lines received so far, without the closing `exit`.
func (f *fakeCfkd) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, l := range f.lines {
		if l != "exit" {
			out = append(out, l)
		}
	}
	return out
}

// waitClosed waits until n connections have ended.
func (f *fakeCfkd) waitClosed(n int) {
	f.t.Helper()
	waitFor(f.t, 5*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.closed >= n
	})
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
