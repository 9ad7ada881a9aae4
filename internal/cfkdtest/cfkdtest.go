// Package cfkdtest is cfkd for the tests of the programs that work with
// it (the proxies, the examples). Start runs the real cfkd: build it once,
// start it on a fresh home with a config, talk to its console, wait for
// its services' states, and stop it when the test ends, showing its log
// when the test failed. StartProxy runs a proxy program under a fake cfkd
// (internal/fakecfkd) instead, for the proxy's side of the protocol. One
// harness, so that every test drives cfkd, or a proxy, the same way.
package cfkdtest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Timeouts of the harness: generous, since CI machines are shared.
const (
	startWait = 20 * time.Second // cfkd's console appears
	replyWait = 20 * time.Second // one console answer
	stopWait  = 20 * time.Second // cfkd exits after TERM
	stateWait = 20 * time.Second // a service or proxy reaches a state
	pollEvery = 5 * time.Millisecond
)

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
// start (`-c`). A cfkd that does not build fails the test. The package's
// TestMain is Main, which removes the cfkd it built.
func Start(t *testing.T, config string) *Daemon {
	t.Helper()
	bin := cfkd.Path(t)
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
	return d.fields("command status service " + name)
}

// fields sends a console line whose answer is one line, and returns that
// line's tab-separated fields.
func (d *Daemon) fields(line string) []string {
	d.T.Helper()
	out := d.Do(line)
	if len(out) != 1 {
		d.T.Fatalf("%s: %q, want one line", line, out)
	}
	return strings.Split(out[0], "\t")
}

// WaitState waits for a service to reach state ("running", "stopped",
// ...) and returns its pid.
func (d *Daemon) WaitState(name, state string) int {
	d.T.Helper()
	f := d.waitStatus(name, state, func(f []string) bool { return f[1] == state })
	pid, _ := strconv.Atoi(f[2])
	return pid
}

// WaitUp waits for a service to be starting or running with a pid other
// than old (0 for a first start, the dead one's for a respawn), and
// returns the pid: for a test that does not need the service past its
// startwait_secs, and need not wait them out.
func (d *Daemon) WaitUp(name string, old int) int {
	d.T.Helper()
	var pid int
	d.waitStatus(name, "up", func(f []string) bool {
		pid, _ = strconv.Atoi(f[2])
		return (f[1] == "starting" || f[1] == "running") && pid != 0 && pid != old
	})
	return pid
}

// waitStatus polls a service's status until cond holds, and returns it;
// the test fails with the last status if it never does.
func (d *Daemon) waitStatus(name, what string, cond func(status []string) bool) []string {
	d.T.Helper()
	deadline := time.Now().Add(stateWait)
	for {
		f := d.Status(name)
		if cond(f) {
			return f
		}
		if time.Now().After(deadline) {
			d.T.Fatalf("%s is not %s after %v: %q", name, what, stateWait, f)
		}
		time.Sleep(pollEvery)
	}
}

// ProxyStatus returns a proxy's state ("up", "down", ...) and pid (0 when
// it has none) from `command proxystatus`.
func (d *Daemon) ProxyStatus(name string) (state string, pid int) {
	d.T.Helper()
	for _, l := range d.Do("command proxystatus") {
		f := strings.Split(l, "\t")
		if f[0] == name {
			if len(f) > 2 {
				pid, _ = strconv.Atoi(f[2])
			}
			return f[1], pid
		}
	}
	d.T.Fatalf("no proxy %s in proxystatus", name)
	return "", 0
}

// WaitProxy waits for a proxy to be in state.
func (d *Daemon) WaitProxy(name, state string) {
	d.T.Helper()
	WaitFor(d.T, stateWait, "proxy "+name+" "+state, func() bool {
		s, _ := d.ProxyStatus(name)
		return s == state
	})
}

// SocketAddr is where socket name listens, from `command sockets`.
func (d *Daemon) SocketAddr(name string) string {
	d.T.Helper()
	f := d.fields("command sockets " + name)
	if len(f) < 2 {
		d.T.Fatalf("sockets %s: %q", name, f)
	}
	return f[1]
}

// WaitLogged waits for cfkd.log to hold text.
func (d *Daemon) WaitLogged(text string) {
	d.T.Helper()
	WaitFor(d.T, stateWait, fmt.Sprintf("%q in cfkd.log", text), func() bool {
		return strings.Contains(d.Log(), text)
	})
}

// Shutdown sends cfkd TERM and waits for it to exit, which it does with
// status 0 once its services and proxies are down.
func (d *Daemon) Shutdown() {
	d.T.Helper()
	d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(stopWait):
		d.T.Fatalf("cfkd did not exit within %v of TERM", stopWait)
	}
	if code := d.Cmd.ProcessState.ExitCode(); code != 0 {
		d.T.Errorf("cfkd exited with status %d after TERM, want 0", code)
	}
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

// ReadLine connects to addr over TCP and returns the first line the
// server sends, without its newline.
func ReadLine(t testing.TB, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, replyWait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(replyWait))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return strings.TrimSuffix(line, "\n")
}
