package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/controlfreak-go/cfk/console"
)

type versionHandler struct{}

func (versionHandler) Execute(r console.Request) ([]string, error) {
	return []string{"cfkd test-version"}, nil
}

// tokenConsole serves a real console.Server with a token on a TCP port
// and writes the token file into home.
func tokenConsole(t *testing.T, home string) string {
	t.Helper()
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	token, _, err := console.EnsureToken(filepath.Join(home, console.TokenFileName))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &console.Server{Handler: versionHandler{}, Token: token}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func TestTCPToken(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	addr := tokenConsole(t, home)

	// The token file in --home is found.
	res := cfkctl(t, invocation{args: []string{"--address", addr, "--home", home, "version"}})
	if res.code != 0 || !strings.Contains(res.stdout, "test-version") {
		t.Fatalf("--home: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	// So is the one named by --token-file and by $CFKD_TOKEN_FILE.
	file := filepath.Join(home, console.TokenFileName)
	if res = cfkctl(t, invocation{args: []string{"--address", addr, "--token-file", file, "version"}}); res.code != 0 {
		t.Fatalf("--token-file: exit %d\n%s", res.code, res.stderr)
	}
	if res = cfkctl(t, invocation{args: []string{"--address", addr, "version"}, env: []string{"CFKD_TOKEN_FILE=" + file}}); res.code != 0 {
		t.Fatalf("$CFKD_TOKEN_FILE: exit %d\n%s", res.code, res.stderr)
	}
	// No token: cfkd's refusal, in plain words.
	res = cfkctl(t, invocation{args: []string{"--address", addr, "version"}})
	if res.code == 0 || !strings.Contains(res.stderr, "authentication required") {
		t.Fatalf("no token: exit %d\n%s", res.code, res.stderr)
	}
	// A wrong one.
	wrong := filepath.Join(t.TempDir(), "wrong")
	os.WriteFile(wrong, []byte("0123456789abcdef0123456789\n"), 0o600)
	res = cfkctl(t, invocation{args: []string{"--address", addr, "--token-file", wrong, "version"}})
	if res.code == 0 || !strings.Contains(res.stderr, "refused the token") {
		t.Fatalf("wrong token: exit %d\n%s", res.code, res.stderr)
	}
	// A token file others can read is refused before dialling... after
	// dialling, but before sending it.
	open := filepath.Join(t.TempDir(), "open")
	os.WriteFile(open, []byte("0123456789abcdef0123456789\n"), 0o644)
	os.Chmod(open, 0o644)
	res = cfkctl(t, invocation{args: []string{"--address", addr, "--token-file", open, "version"}})
	if res.code == 0 || !strings.Contains(res.stderr, "can be read or written by others") {
		t.Fatalf("open token file: exit %d\n%s", res.code, res.stderr)
	}
}
