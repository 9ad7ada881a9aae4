package console

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

const testToken = "3f1c9a7e5b2d4f608a1b2c3d4e5f60718293a4b5c6d7e8f9"

func TestTCPNeedsTheTokenFirst(t *testing.T) {
	ts := startServer(t, "tcp", func(s *Server) { s.Token = testToken })

	// A command before auth: one ERROR, then the connection is closed,
	// and the command did not run.
	c := ts.dial(t)
	write(t, c, "command echo v\r\ncommand echo v\r\n")
	if got := readToEOF(t, c); !strings.HasPrefix(got, "ERROR: authentication required") || strings.Count(got, "\r\n") != 1 {
		t.Fatalf("before auth: %q", got)
	}
	if n := ts.handler.ran("echo"); n != 0 {
		t.Fatalf("a command ran before auth (%d times)", n)
	}

	// A wrong token: ERROR, closed, logged.
	c = ts.dial(t)
	write(t, c, "auth "+strings.Repeat("0", len(testToken))+"\r\ncommand echo v\r\n")
	if got := readToEOF(t, c); got != "ERROR: authentication failed\r\n" {
		t.Fatalf("wrong token: %q", got)
	}
	if !ts.log.has("console authentication failed from 127.0.0.1:") {
		t.Errorf("the failure is not logged")
	}
	// A prefix of the token is not the token.
	c = ts.dial(t)
	write(t, c, "auth "+testToken[:10]+"\r\n")
	if got := readToEOF(t, c); got != "ERROR: authentication failed\r\n" {
		t.Fatalf("token prefix: %q", got)
	}

	// The right token (the verb in any case, pipelined with a command).
	c = ts.dial(t)
	write(t, c, "AUTH "+testToken+"\r\ncommand echo v\r\n")
	if got := readN(t, c, len("OK\r\nv\nOK\r\n")); got != "OK\r\nv\nOK\r\n" {
		t.Fatalf("after auth: %q", got)
	}

	// The client's way, and exit works before auth.
	cl := ts.client(t)
	if _, err := cl.Do("command echo v"); !isServerError(err, "authentication required") {
		t.Fatalf("client without auth: %v", err)
	}
	cl = ts.client(t)
	if err := cl.Auth(testToken); err != nil {
		t.Fatal(err)
	}
	if out, err := cl.Do("command echo v"); err != nil || len(out) != 1 {
		t.Fatalf("client after auth: %q %v", out, err)
	}
	c = ts.dial(t)
	write(t, c, "exit\r\n")
	if got := readToEOF(t, c); got != "" {
		t.Fatalf("exit before auth: %q", got)
	}
}

func TestUnixNeedsNoToken(t *testing.T) {
	ts := startServer(t, "unix", func(s *Server) { s.Token = testToken })
	cl := ts.client(t)
	if _, err := cl.Do("command echo v"); err != nil {
		t.Fatalf("unix without auth: %v", err)
	}
	// auth is still checked where it is sent.
	if err := cl.Auth(testToken); err != nil {
		t.Fatalf("right token on unix: %v", err)
	}
	cl = ts.client(t)
	if err := cl.Auth("nope"); !isServerError(err, "authentication failed") {
		t.Fatalf("wrong token on unix: %v", err)
	}
}

func TestAuthWithoutTokenIsAccepted(t *testing.T) {
	bothNetworks(t, func(t *testing.T, network string) {
		ts := startServer(t, network, nil)
		cl := ts.client(t)
		if err := cl.Auth("anything"); err != nil {
			t.Fatalf("auth with no token set: %v", err)
		}
		if _, err := cl.Do("command echo v"); err != nil {
			t.Fatal(err)
		}
	})
}

func isServerError(err error, sub string) bool {
	var se *ServerError
	return errors.As(err, &se) && strings.Contains(se.Msg, sub)
}

func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/" + TokenFileName
	tok, created, err := EnsureToken(path)
	if err != nil || !created || len(tok) != 64 {
		t.Fatalf("new token: %q created=%v %v", tok, created, err)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", info.Mode())
	}
	again, created, err := EnsureToken(path)
	if err != nil || created || again != tok {
		t.Fatalf("second EnsureToken: %q created=%v %v", again, created, err)
	}
	if got, err := ReadToken(path); err != nil || got != tok {
		t.Fatalf("ReadToken: %q %v", got, err)
	}
	bad := map[string]struct {
		content string
		mode    os.FileMode
		want    string
	}{
		"open":  {"abcdefghijklmnopqrstuvwxyz\n", 0o644, "read or written by others"},
		"short": {"abc\n", 0o600, "at least 16"},
		"words": {"abcdefghijklmnop qrstuvwxyz\n", 0o600, "one word"},
	}
	for name, b := range bad {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(b.content), b.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, b.mode)
		if _, err := ReadToken(p); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: %v, want %q", name, err, b.want)
		}
		if _, _, err := EnsureToken(p); err == nil {
			t.Errorf("%s: EnsureToken accepted a bad file", name)
		}
	}
}

func TestTokenFileMustBeOurOwnRegularFile(t *testing.T) {
	dir := t.TempDir()
	real := dir + "/real"
	if err := os.WriteFile(real, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := dir + "/link"
	os.Symlink(real, link)
	if _, err := ReadToken(link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a symbolic link was followed: %v", err)
	}
	if _, err := ReadToken(dir); err == nil {
		t.Errorf("a directory was read as a token file")
	}
	if os.Geteuid() == 0 {
		// Someone else's file, even mode 0600, is not ours to trust.
		os.Chown(real, 65534, 65534)
		if _, err := ReadToken(real); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
			t.Errorf("another user's token file was accepted: %v", err)
		}
	}
}

func TestUnauthenticatedClientIsDropped(t *testing.T) {
	old := AuthTimeout
	AuthTimeout = 300 * time.Millisecond
	t.Cleanup(func() { AuthTimeout = old })
	ts := startServer(t, "tcp", func(s *Server) { s.Token = testToken; s.MaxConns = 2 })
	idle := ts.dial(t)
	idle2 := ts.dial(t)
	// Both slots taken by peers that say nothing: they are dropped, and
	// the operator gets in.
	if got := readToEOF(t, idle); got != "" {
		t.Fatalf("idle peer got %q", got)
	}
	readToEOF(t, idle2)
	cl := ts.client(t)
	if err := cl.Auth(testToken); err != nil {
		t.Fatalf("the operator after idle peers: %v", err)
	}
	// Once in, no deadline: a pause longer than AuthTimeout is fine.
	time.Sleep(2 * AuthTimeout)
	if _, err := cl.Do("command echo still"); err != nil {
		t.Fatalf("an authenticated client was dropped: %v", err)
	}
}
