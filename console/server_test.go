package console

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// TestMain lets the test binary serve as a helper child: with
// CONSOLE_TEST_DIAL set it dials that unix socket, sends one line and
// prints what it got (used to talk to the server as another user).
func TestMain(m *testing.M) {
	if addr := os.Getenv("CONSOLE_TEST_DIAL"); addr != "" {
		c, err := net.DialTimeout("unix", addr, 5*time.Second)
		if err != nil {
			fmt.Println("dial:", err)
			os.Exit(2)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "command echo hello\n")
		b, _ := io.ReadAll(c)
		os.Stdout.Write(b)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testHandler answers commands in ways the tests can predict:
// echo ARGS (one body line per arg), fail MSG..., panic, big (a large
// answer), raw (body lines holding line breaks), lines N; declarations are
// accepted. It records every verb it runs.
type testHandler struct {
	mu    sync.Mutex
	verbs []string
}

func (h *testHandler) Execute(r Request) ([]string, error) {
	h.mu.Lock()
	h.verbs = append(h.verbs, r.Verb)
	h.mu.Unlock()
	if r.Kind != KindCommand {
		return nil, nil
	}
	switch r.Verb {
	case "echo":
		return r.Args, nil
	case "fail":
		return nil, errors.New(strings.Join(r.Args, " "))
	case "multiline":
		return nil, errors.New("first line\nsecond line\r\nthird\rfourth")
	case "raw":
		return []string{"a\nb", "c\r\nd", "e\r", "OK"}, nil
	case "panic":
		panic("boom")
	case "lines":
		n, _ := strconv.Atoi(r.Args[0])
		out := make([]string, n)
		for i := range out {
			out[i] = "line " + strconv.Itoa(i)
		}
		return out, nil
	case "big":
		out := make([]string, 100)
		for i := range out {
			out[i] = strings.Repeat("x", 1000)
		}
		return out, nil
	case "none":
		return nil, nil
	}
	return nil, fmt.Errorf("unknown command '%s'", r.Verb)
}

func (h *testHandler) ran(verb string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, v := range h.verbs {
		if v == verb {
			n++
		}
	}
	return n
}

// logRecorder collects the server's log lines.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) Logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logRecorder) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

type testServer struct {
	*Server
	addr    string // as given to Listen and Dial
	network string
	dialTo  string // for net.Dial
	handler *testHandler
	log     *logRecorder
}

// startServer serves a testHandler on a unix socket in a temporary
// directory ("unix") or on a free local TCP port ("tcp"). configure may
// set limits before Serve starts.
func startServer(t *testing.T, network string, configure func(*Server)) *testServer {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = "unix:" + filepath.Join(t.TempDir(), "sock")
	}
	l, err := Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: &Server{}, network: network, handler: &testHandler{}, log: &logRecorder{}}
	ts.Handler = ts.handler
	ts.Logf = ts.log.Logf
	if configure != nil {
		configure(ts.Server)
	}
	ts.dialTo = l.Addr().String()
	ts.addr = ts.dialTo
	if network == "unix" {
		ts.addr = "unix:" + ts.dialTo
	}
	done := make(chan error, 1)
	go func() { done <- ts.Serve(l) }()
	t.Cleanup(func() {
		if err := ts.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after Close")
		}
	})
	return ts
}

func (ts *testServer) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(ts.network, ts.dialTo, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (ts *testServer) client(t *testing.T) *Client {
	t.Helper()
	c, err := Dial(ts.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readN reads exactly n bytes, failing the test after a deadline.
func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	got, err := io.ReadFull(c, b)
	if err != nil {
		t.Fatalf("read %d bytes: got %q: %v", n, b[:got], err)
	}
	return string(b)
}

// readToEOF reads until the server closes the connection.
func readToEOF(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read to EOF: got %q: %v", b, err)
	}
	return string(b)
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

func bothNetworks(t *testing.T, f func(t *testing.T, network string)) {
	for _, n := range []string{"unix", "tcp"} {
		t.Run(n, func(t *testing.T) { f(t, n) })
	}
}

func TestFraming(t *testing.T) {
	tests := []struct{ send, want string }{
		{"command echo a b\n", "a\nb\nOK\r\n"},
		{"command echo a b\r\n", "a\nb\nOK\r\n"},
		{"command none\n", "OK\r\n"},
		{"service s1 cmd=sleep 100\n", "OK\r\n"},
		{"command echo OK\n", "OK\nOK\r\n"},
		{"\n", "ERROR: command is void\r\n"},
		{"\r\n", "ERROR: command is void\r\n"},
		{"   # a comment\n", "ERROR: command is void\r\n"},
		{"bogus thing\n", "ERROR: unknown command 'bogus'\r\n"},
		{"service s\n", "ERROR: malformed service command 's'\r\n"},
		{"service my-svc cmd=x\n", "ERROR: service name is invalid\r\n"},
		{"command fail no such service\n", "ERROR: no such service\r\n"},
		{"command multiline\n", "ERROR: first line second line third fourth\r\n"},
		{"command raw\n", "a b\nc d\ne \nOK\nOK\r\n"},
		{"command panic\n", "ERROR: internal error: boom\r\n"},
		{"command echo still alive\n", "still\nalive\nOK\r\n"},
		{"exits\n", "ERROR: unknown command 'exits'\r\n"},
	}
	bothNetworks(t, func(t *testing.T, network string) {
		ts := startServer(t, network, nil)
		c := ts.dial(t)
		for _, tt := range tests {
			write(t, c, tt.send)
			if got := readN(t, c, len(tt.want)); got != tt.want {
				t.Errorf("%q: got %q, want %q", tt.send, got, tt.want)
			}
		}
		// Nothing more than the answers was sent: exit closes at once.
		write(t, c, "exit\n")
		if rest := readToEOF(t, c); rest != "" {
			t.Errorf("after the answers: %q", rest)
		}
		if !ts.log.has("panic executing \"command panic\": boom") {
			t.Errorf("the panic was not logged: %q", ts.log.lines)
		}
	})
}

func TestExit(t *testing.T) {
	for _, exit := range []string{"exit", "EXIT", "Exit", "  exit\t", "exit\r"} {
		ts := startServer(t, "unix", nil)
		c := ts.dial(t)
		// Answers before exit are delivered; lines after it are not run.
		write(t, c, "command echo 1\n"+exit+"\ncommand echo 2\n")
		if got := readToEOF(t, c); got != "1\nOK\r\n" {
			t.Errorf("%q: got %q", exit, got)
		}
		if n := ts.handler.ran("echo"); n != 1 {
			t.Errorf("%q: echo ran %d times, want 1", exit, n)
		}
		waitFor(t, 5*time.Second, "the close to be logged", func() bool {
			return ts.log.has("console connection closed") && ts.log.has(": exit")
		})
	}
}

func TestPipelining(t *testing.T) {
	bothNetworks(t, func(t *testing.T, network string) {
		ts := startServer(t, network, nil)
		c := ts.dial(t)
		var send, want strings.Builder
		for i := range 100 {
			switch i % 3 {
			case 0:
				fmt.Fprintf(&send, "command echo %d\n", i)
				fmt.Fprintf(&want, "%d\nOK\r\n", i)
			case 1:
				fmt.Fprintf(&send, "command fail e%d\r\n", i)
				fmt.Fprintf(&want, "ERROR: e%d\r\n", i)
			case 2:
				fmt.Fprintf(&send, "service s%d desc=x\n", i)
				fmt.Fprintf(&want, "OK\r\n")
			}
		}
		write(t, c, send.String())
		if got := readN(t, c, want.Len()); got != want.String() {
			t.Errorf("pipelined answers:\n got %q\nwant %q", got, want.String())
		}
	})
}

func TestConcurrentClients(t *testing.T) {
	bothNetworks(t, func(t *testing.T, network string) {
		ts := startServer(t, network, nil)
		const clients, requests = 60, 100
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for i := range clients {
			wg.Go(func() {
				c, err := Dial(ts.addr, 5*time.Second)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				for j := range requests {
					want := fmt.Sprintf("c%d-r%d", i, j)
					out, err := c.Do("command echo " + want + " OK")
					if err != nil || len(out) != 2 || out[0] != want || out[1] != "OK" {
						errs <- fmt.Errorf("client %d request %d: %q, %v", i, j, out, err)
						return
					}
					if _, err := c.Do("command fail nope"); err == nil || err.Error() != "nope" {
						errs <- fmt.Errorf("client %d request %d: fail gave %v", i, j, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := ts.handler.ran("echo"); n != clients*requests {
			t.Errorf("echo ran %d times, want %d", n, clients*requests)
		}
	})
}

func TestLongLine(t *testing.T) {
	bothNetworks(t, func(t *testing.T, network string) {
		ts := startServer(t, network, nil)
		c := ts.dial(t)
		long := "command echo " + strings.Repeat("y", 100<<10)
		want := "ERROR: line too long (limit 65536 bytes)\r\nafter\nOK\r\n"
		// Written from another goroutine: the server answers before the
		// whole line is read, and we must read while we write.
		go func() { io.WriteString(c, long+"\ncommand echo after\n") }()
		if got := readN(t, c, len(want)); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		if n := ts.handler.ran("echo"); n != 1 {
			t.Errorf("echo ran %d times, want 1 (the long line must not run)", n)
		}
	})
}

func TestLineLimitBoundary(t *testing.T) {
	ts := startServer(t, "unix", func(s *Server) { s.MaxLineBytes = 40 })
	c := ts.dial(t)
	line := func(n int) string { // a command of exactly n bytes
		return "command echo " + strings.Repeat("z", n-len("command echo "))
	}
	arg := func(n int) string { return strings.Repeat("z", n-len("command echo ")) }
	tests := []struct{ send, want string }{
		{line(40) + "\n", arg(40) + "\nOK\r\n"},
		{line(40) + "\r\n", arg(40) + "\nOK\r\n"},
		{line(41) + "\n", "ERROR: line too long (limit 40 bytes)\r\n"},
		{line(41) + "\r\n", "ERROR: line too long (limit 40 bytes)\r\n"},
		{line(39) + "\n", arg(39) + "\nOK\r\n"},
		{strings.Repeat("w", 5000) + "\n", "ERROR: line too long (limit 40 bytes)\r\n"},
		{"command echo ok\n", "ok\nOK\r\n"},
	}
	for _, tt := range tests {
		write(t, c, tt.send)
		if got := readN(t, c, len(tt.want)); got != tt.want {
			t.Errorf("%d bytes: got %q, want %q", len(tt.send), got, tt.want)
		}
	}
}

func TestSlowReaderIsDropped(t *testing.T) {
	bothNetworks(t, func(t *testing.T, network string) {
		ts := startServer(t, network, func(s *Server) { s.WriteTimeout = 300 * time.Millisecond })
		slow := ts.dial(t)
		// Ask for large answers and never read them: the server's writes
		// fill the socket buffers, then time out.
		go func() {
			for {
				if _, err := io.WriteString(slow, "command big\n"); err != nil {
					return
				}
			}
		}()
		waitFor(t, 10*time.Second, "the server to be blocked on the slow client", func() bool {
			return ts.handler.ran("big") > 0
		})
		other := ts.client(t)
		served := 0
		waitFor(t, 10*time.Second, "the slow client to be dropped", func() bool {
			out, err := other.Do("command echo fine")
			if err != nil || len(out) != 1 || out[0] != "fine" {
				t.Fatalf("the other client got %q, %v", out, err)
			}
			served++
			return ts.log.has("cannot write the answer: timed out")
		})
		if served == 0 {
			t.Error("the other client was not served while the slow one was connected")
		}
		waitFor(t, 5*time.Second, "the slow connection to be gone", func() bool {
			ts.mu.Lock()
			defer ts.mu.Unlock()
			return len(ts.conns) == 1
		})
		if _, err := other.Do("command echo fine"); err != nil {
			t.Error(err)
		}
	})
}

func TestDisconnectMidLine(t *testing.T) {
	bothNetworks(t, func(t *testing.T, network string) {
		ts := startServer(t, network, nil)
		c := ts.dial(t)
		write(t, c, "command echo a\ncommand partial")
		// Half-close: the server sees EOF after the partial line.
		type closeWriter interface{ CloseWrite() error }
		if err := c.(closeWriter).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if got := readToEOF(t, c); got != "a\nOK\r\n" {
			t.Errorf("got %q", got)
		}
		if n := ts.handler.ran("partial"); n != 0 {
			t.Errorf("the unterminated line ran %d times", n)
		}

		// A client that vanishes mid-line does not disturb others.
		c2 := ts.dial(t)
		write(t, c2, "command echo "+strings.Repeat("q", 10000))
		c2.Close()
		waitFor(t, 5*time.Second, "both connections to end", func() bool {
			ts.mu.Lock()
			defer ts.mu.Unlock()
			return len(ts.conns) == 0
		})
		if out, err := ts.client(t).Do("command echo next"); err != nil || len(out) != 1 {
			t.Errorf("next client: %q, %v", out, err)
		}
	})
}

func TestBinaryGarbage(t *testing.T) {
	ts := startServer(t, "unix", nil)
	c := ts.dial(t)
	rng := rand.New(rand.NewSource(1))
	garbage := make([]byte, 256<<10)
	rng.Read(garbage)
	go func() { c.Write(append(garbage, "\ncommand echo alive\n"...)) }()

	lines := bytes.Count(garbage, []byte("\n")) + 1
	r := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range lines {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("answer %d of %d: %q, %v", i, lines, l, err)
		}
		if !strings.HasPrefix(l, "ERROR: ") || !strings.HasSuffix(l, "\r\n") || strings.Count(l, "\n") != 1 {
			t.Fatalf("answer %d: %q", i, l)
		}
		if !utf8.ValidString(l) || strings.ContainsAny(l[:len(l)-2], "\x00\x1b\r") {
			t.Errorf("answer %d is not clean text: %q", i, l)
		}
	}
	if l, err := r.ReadString('\n'); l != "alive\n" || err != nil {
		t.Errorf("after the garbage: %q, %v", l, err)
	}
}

func TestMaxConns(t *testing.T) {
	ts := startServer(t, "tcp", func(s *Server) { s.MaxConns = 2 })
	a, b := ts.client(t), ts.client(t)
	for _, c := range []*Client{a, b} {
		if _, err := c.Do("command none"); err != nil {
			t.Fatal(err)
		}
	}
	third := ts.dial(t)
	if got := readToEOF(t, third); got != "ERROR: too many connections\r\n" {
		t.Errorf("third connection got %q", got)
	}
	a.Close()
	waitFor(t, 5*time.Second, "a new connection to be served", func() bool {
		c, err := Dial(ts.addr, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_, err = c.Do("command none")
		return err == nil
	})
	if _, err := b.Do("command none"); err != nil {
		t.Error(err)
	}
}

func TestClose(t *testing.T) {
	ts := startServer(t, "unix", nil)
	c := ts.dial(t)
	write(t, c, "command echo x\n")
	readN(t, c, len("x\nOK\r\n"))
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readToEOF(t, c); got != "" {
		t.Errorf("after Close: %q", got)
	}
	if _, err := net.Dial("unix", ts.dialTo); err == nil {
		t.Error("the socket still accepts after Close")
	}
	if _, err := os.Stat(ts.dialTo); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the socket file is left behind: %v", err)
	}
	// Serve on a closed server returns at once and closes its listener.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Serve(l); err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the listener given after Close is open: %v", err)
	}
}

func TestServeNeedsHandler(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := new(Server).Serve(l); err == nil {
		t.Error("Serve without a Handler succeeded")
	}
}

func TestSocketIsPrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	if got := syscall.Umask(0o022); got != 0o022 {
		t.Errorf("Listen left the umask at %#o", got)
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sock")
	// A dead cfkd leaves its socket file behind.
	dead, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	dead.SetUnlinkOnClose(false)
	dead.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}

	l, err := Listen("unix:" + path)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	defer l.Close()
	s := &Server{Handler: &testHandler{}}
	go s.Serve(l)
	defer s.Close()

	// A live one is not replaced, and still works afterwards.
	_, err = Listen("unix:" + path)
	if err == nil || err.Error() != "another cfkd is listening on "+path {
		t.Fatalf("second Listen: %v", err)
	}
	c, err := Dial(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if out, err := c.Do("command echo still"); err != nil || len(out) != 1 {
		t.Errorf("the first server after the refused Listen: %q, %v", out, err)
	}
}

func TestListenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "not-a-socket")
	if err := os.WriteFile(file, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct{ addr, want string }{
		{file, "listen on unix:" + file + ": the path exists and is not a socket"},
		{dir + "/missing/sock", "listen on unix:" + dir + "/missing/sock: no such file or directory"},
		{busy.Addr().String(), "listen on " + busy.Addr().String() + ": address already in use"},
		{"", "empty address"},
	}
	for _, tt := range tests {
		l, err := Listen(tt.addr)
		if err == nil {
			l.Close()
			t.Errorf("Listen(%q) succeeded", tt.addr)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("Listen(%q): %q, want %q", tt.addr, err, tt.want)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Errorf("the regular file was touched: %q, %v", b, err)
	}
}

func TestPeerAllowed(t *testing.T) {
	tests := []struct {
		peer, self uint32
		want       bool
	}{
		{0, 0, true},
		{0, 1000, true},
		{1000, 1000, true},
		{1001, 1000, false},
		{1000, 0, false},
		{65534, 0, false},
	}
	for _, tt := range tests {
		if got := peerAllowed(tt.peer, tt.self); got != tt.want {
			t.Errorf("peerAllowed(%d, %d) = %v", tt.peer, tt.self, got)
		}
	}
}

func TestPeerCredentials(t *testing.T) {
	ts := startServer(t, "unix", nil)
	// Our own user is served, and named in the log.
	if out, err := ts.client(t).Do("command echo me"); err != nil || len(out) != 1 {
		t.Fatalf("same uid: %q, %v", out, err)
	}
	if !ts.log.has(fmt.Sprintf("console connection from pid %d uid %d", os.Getpid(), os.Geteuid())) {
		t.Errorf("the connection's peer is not logged: %q", ts.log.lines)
	}

	if os.Geteuid() != 0 {
		t.Skip("talking as another user needs root")
	}
	// Another user is refused even when the file mode would let them in.
	const nobody = 65534
	dir, err := os.MkdirTemp("", "console-peer")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(sock, 0o666)
	log := &logRecorder{}
	s := &Server{Handler: &testHandler{}, Logf: log.Logf}
	go s.Serve(l)
	defer s.Close()

	// The test binary lives in a private build directory: copy it where
	// nobody can run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "console.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"CONSOLE_TEST_DIAL=" + sock}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper as uid %d: %v: %s", nobody, err, out)
	}
	if string(out) != "ERROR: permission denied\r\n" {
		t.Errorf("uid %d got %q", nobody, out)
	}
	if !log.has(fmt.Sprintf("uid %d: not root nor cfkd's own user", nobody)) {
		t.Errorf("the refusal is not logged: %q", log.lines)
	}
}

func TestClientSeesBodyOK(t *testing.T) {
	ts := startServer(t, "tcp", nil)
	c := ts.client(t)
	out, err := c.Do("command raw")
	if err != nil || strings.Join(out, "|") != "a b|c d|e |OK" {
		t.Errorf("got %q, %v", out, err)
	}
	_, err = c.Do("command multiline")
	var se *ServerError
	if !errors.As(err, &se) || se.Msg != "first line second line third fourth" {
		t.Errorf("got %v", err)
	}
	if _, err := c.Do(""); err == nil || err.Error() != "command is void" {
		t.Errorf("void line: %v", err)
	}
}
