// Package cfkdtest runs the real cfkd for the tests of the programs that
// work with it (the proxies, the examples): build it once, start it on a
// fresh home with a config, talk to its console, and stop it when the
// test ends, showing its log when the test failed. One harness, so that
// every end-to-end test drives cfkd the same way.
package cfkdtest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts of the harness: generous, since CI machines are shared.
const (
	startWait = 20 * time.Second // cfkd's console appears
	replyWait = 20 * time.Second // one console answer
	stopWait  = 20 * time.Second // cfkd exits after TERM
	pollEvery = 5 * time.Millisecond
)

// Build builds cfkd once per test binary, into a temporary directory.
var Build = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "cfkdtest")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "cfkd")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/controlfreak-go/cfk/cmd/cfkd").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%v\n%s", err, out)
	}
	return bin, nil
})

// Daemon is a running cfkd and a console connection to it.
type Daemon struct {
	T    *testing.T
	Home string
	Cmd  *exec.Cmd

	conn net.Conn
	r    *bufio.Reader
	done chan struct{}
}

// Start runs cfkd in the foreground on a fresh home with config loaded at
// start (`-c`). A cfkd that does not build fails the test.
func Start(t *testing.T, config string) *Daemon {
	t.Helper()
	bin, err := Build()
	if err != nil {
		t.Fatalf("cfkd does not build: %v", err)
	}
	home := t.TempDir()
	cfg := filepath.Join(home, "test.conf")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{T: t, Home: home, done: make(chan struct{})}
	d.Cmd = exec.Command(bin, "--home", home, "-c", cfg)
	d.Cmd.Stderr = os.Stderr
	if err := d.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.Cmd.Wait(); close(d.done) }()
	t.Cleanup(d.stop)
	sock := filepath.Join(home, "sock")
	deadline := time.Now().Add(startWait)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			d.conn, d.r = c, bufio.NewReader(c)
			return d
		}
		select {
		case <-d.done:
			t.Fatalf("cfkd exited during start-up: %v\n%s", d.Cmd.ProcessState, d.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("cfkd's console did not appear: %v", err)
		}
		time.Sleep(pollEvery)
	}
}

func (d *Daemon) stop() {
	if d.conn != nil {
		d.conn.Close()
	}
	d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(stopWait):
		d.T.Errorf("cfkd did not stop on TERM")
		d.Cmd.Process.Kill()
		<-d.done
	}
	if d.T.Failed() {
		d.T.Logf("cfkd.log:\n%s", d.Log())
	}
}

// Done is closed when cfkd has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Log is cfkd.log as it is now.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Home, "cfkd.log"))
	return string(b)
}

// Do sends one console line and returns the body of the answer; an
// ERROR answer fails the test.
func (d *Daemon) Do(line string) []string {
	d.T.Helper()
	out, err := d.Try(line)
	if err != nil {
		d.T.Fatalf("%s: %v", line, err)
	}
	return out
}

// Try sends one console line and returns the body of the answer, or the
// ERROR's text as an error.
func (d *Daemon) Try(line string) ([]string, error) {
	d.T.Helper()
	d.conn.SetDeadline(time.Now().Add(replyWait))
	if _, err := io.WriteString(d.conn, line+"\n"); err != nil {
		d.T.Fatalf("%s: %v", line, err)
	}
	var out []string
	for {
		l, err := d.r.ReadString('\n')
		if err != nil {
			d.T.Fatalf("%s: %v", line, err)
		}
		switch {
		case l == "OK\r\n":
			return out, nil
		case strings.HasPrefix(l, "ERROR:") && strings.HasSuffix(l, "\r\n"):
			return out, fmt.Errorf("%s", strings.TrimSpace(strings.TrimPrefix(l, "ERROR:")))
		}
		out = append(out, strings.TrimSuffix(l, "\n"))
	}
}

// Status returns the fields of a service's status line: name state pid
// start_time stop_time proxy fail_reason running_cmd status.
func (d *Daemon) Status(name string) []string {
	d.T.Helper()
	out := d.Do("command status service " + name)
	if len(out) != 1 {
		d.T.Fatalf("status %s: %q", name, out)
	}
	return strings.Split(out[0], "\t")
}

// WaitFor polls cond until it holds or the deadline passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(pollEvery)
	}
}
