package cfkdtest

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/controlfreak-go/cfk/internal/fakecfkd"
	"github.com/controlfreak-go/cfk/internal/proctest"
)

// Timeouts of a proxy under the fake cfkd.
const (
	proxyWait     = 20 * time.Second // a status or log line
	proxyStopWait = 15 * time.Second // the proxy exits after EOF on its commands
)

// Proxy is a proxy program under test, with a fake cfkd (internal/fakecfkd)
// at the other end of its pipes. Its methods fail the test where
// fakecfkd's return an error.
//
// When the test ends, the fake cfkd goes as the real one does: it closes
// the command pipe, and the proxy must then stop its services and exit
// within proxyStopWait. A malformed status line fails the test, and a
// failed test shows the proxy's own output, its statuses and log lines.
type Proxy struct {
	t         testing.TB
	p         *fakecfkd.Proxy
	output    lockedBuffer
	closeOnce sync.Once
}

// StartProxy starts a proxy program under the fake cfkd. Unless o says
// otherwise, it runs in a fresh directory, which is also its CFKD_HOME.
// Its own stdout and stderr are kept for Output (o.Stdout is not used).
func StartProxy(t testing.TB, o fakecfkd.Options) *Proxy {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Home == "" {
		o.Home = o.Dir
	}
	h := &Proxy{t: t}
	o.Stdout = &h.output
	p, err := fakecfkd.Start(o)
	if err != nil {
		t.Fatalf("start the proxy %s: %v", o.Path, err)
	}
	h.p = p
	t.Cleanup(h.Close)
	return h
}

// Pid is the proxy's pid.
func (h *Proxy) Pid() int { return h.p.Cmd.Process.Pid }

// Socket is the listening socket handed to the proxy as name.
func (h *Proxy) Socket(name string) *fakecfkd.Socket {
	h.t.Helper()
	s := h.p.Sockets[name]
	if s == nil {
		h.t.Fatalf("no socket %s was handed to the proxy", name)
	}
	return s
}

// Signal sends sig to the proxy.
func (h *Proxy) Signal(sig syscall.Signal) {
	h.t.Helper()
	if err := h.p.Signal(sig); err != nil {
		h.t.Fatalf("signal the proxy: %v", err)
	}
}

// Done is closed when the proxy has exited.
func (h *Proxy) Done() <-chan struct{} { return h.p.Done() }

// Output is what the proxy itself wrote on stdout and stderr so far.
func (h *Proxy) Output() string { return h.output.String() }

// Statuses returns every status line so far.
func (h *Proxy) Statuses() []fakecfkd.Status { return h.p.Statuses() }

// Logs returns every log line so far.
func (h *Proxy) Logs() []string { return h.p.Logs() }

// ReadLogs starts reading the log pipe that Options.HoldLogs held.
func (h *Proxy) ReadLogs() { h.p.ReadLogs() }

// CloseCommands closes the command pipe: EOF, as when cfkd is gone.
func (h *Proxy) CloseCommands() { h.p.CloseCommands() }

// Send writes cmd as one JSON command line.
func (h *Proxy) Send(cmd any) {
	h.t.Helper()
	b, err := json.Marshal(cmd)
	if err != nil {
		h.t.Fatal(err)
	}
	h.SendLine(string(b))
}

// SendLine writes one command line as it is, JSON or not.
func (h *Proxy) SendLine(line string) {
	h.t.Helper()
	if err := h.p.SendLine(line); err != nil {
		h.t.Fatalf("send %q: %v", line, err)
	}
}

// Start sends a start command with the protocol's fields at the values
// cfkd sends by default; extra sets more fields or other values.
func (h *Proxy) Start(name string, cmd any, extra map[string]any) {
	h.t.Helper()
	c := map[string]any{"command": "start", "name": name, "cmd": cmd, "env": map[string]string{},
		"tie_stdin_to": nil, "ignore_stdout": 0, "ignore_stderr": 0, "no_new_session": 0}
	for k, v := range extra {
		c[k] = v
	}
	h.Send(c)
}

// Stop sends a stop command.
func (h *Proxy) Stop(name string) {
	h.t.Helper()
	h.Send(map[string]string{"command": "stop", "name": name})
}

// StartService is Start, then a wait for the started status that answers
// it; it returns the service's pid.
func (h *Proxy) StartService(name string, cmd any, extra map[string]any) int {
	h.t.Helper()
	n := len(h.p.Statuses())
	h.Start(name, cmd, extra)
	return h.started(n, name)
}

// Started waits for a started status of name and returns its pid.
func (h *Proxy) Started(name string) int {
	h.t.Helper()
	return h.started(0, name)
}

func (h *Proxy) started(from int, name string) int {
	h.t.Helper()
	st := h.waitStatus(from, func(s fakecfkd.Status) bool { return s.Name == name && s.Status == "started" })
	if st.Pid <= 0 {
		h.t.Fatalf("started status without a pid: %s", st)
	}
	return st.Pid
}

// Stopped waits for the stopped status of pid, the service name, and
// returns its exit_status (a raw wait status, as Perl's $?).
func (h *Proxy) Stopped(name string, pid int) int {
	h.t.Helper()
	st := h.waitStatus(0, func(s fakecfkd.Status) bool { return s.Status == "stopped" && s.Pid == pid })
	if st.Name != name || st.ExitStatus == nil {
		h.t.Fatalf("stopped status %s, want one of %s with an exit_status", st, name)
	}
	return *st.ExitStatus
}

func (h *Proxy) waitStatus(from int, match func(fakecfkd.Status) bool) fakecfkd.Status {
	h.t.Helper()
	st, err := h.p.WaitStatus(proxyWait, from, match)
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

// WaitLog waits for a log line that starts with prefix and returns it.
func (h *Proxy) WaitLog(prefix string) string {
	h.t.Helper()
	l, err := h.p.WaitLogPrefix(proxyWait, prefix)
	if err != nil {
		h.t.Fatalf("log line %q: %v", prefix, err)
	}
	return l
}

// Lines returns the messages logged so far as KIND:NAME: ("out" or "err",
// a service's name or "-" for the proxy's own).
func (h *Proxy) Lines(kind, name string) []string {
	var out []string
	for _, l := range h.p.Logs() {
		if msg, ok := strings.CutPrefix(l, kind+":"+name+":"); ok {
			out = append(out, msg)
		}
	}
	return out
}

// WaitExit waits for the proxy to exit and returns its exit code (-1 when
// a signal killed it).
func (h *Proxy) WaitExit() int {
	h.t.Helper()
	select {
	case <-h.p.Done():
	case <-time.After(proxyStopWait):
		h.t.Fatalf("the proxy did not exit within %v", proxyStopWait)
	}
	return h.p.Cmd.ProcessState.ExitCode()
}

// Close ends the proxy as cfkd's exit does, with the checks and the log
// that Proxy describes. The test's cleanup calls it; a test may call it
// earlier, to check what the proxy left behind.
func (h *Proxy) Close() {
	h.closeOnce.Do(h.close)
}

func (h *Proxy) close() {
	t := h.t
	h.p.ReadLogs() // a held log pipe must not keep the proxy from exiting
	h.p.CloseCommands()
	select {
	case <-h.p.Done():
	case <-time.After(proxyStopWait):
		t.Errorf("the proxy still runs %v after EOF on its commands; killing it", proxyStopWait)
		h.p.Cmd.Process.Kill()
		<-h.p.Done()
	}
	h.killLeftovers()
	select {
	case <-h.p.Drained():
	case <-time.After(proxyStopWait):
		t.Errorf("the proxy's status and log pipes are still open %v after its exit", proxyStopWait)
	}
	h.p.Close() // the sockets
	var statuses []string
	for _, s := range h.p.Statuses() {
		if s.Err != nil {
			t.Errorf("malformed status line %q: %v", s.Raw, s.Err)
		}
		statuses = append(statuses, s.Raw)
	}
	if t.Failed() {
		t.Logf("proxy output:\n%s", h.Output())
		t.Logf("proxy statuses:\n%s", strings.Join(statuses, "\n"))
		t.Logf("proxy log lines:\n%s", strings.Join(h.p.Logs(), "\n"))
	}
}

// killLeftovers kills the services the proxy started and did not report
// stopped, with their process groups: the orphans of a proxy that crashed
// or was killed. A pid is killed only while it still has a service's name
// ("[cfk NAME] ...", in cmdline or comm), not when a stranger reused it.
func (h *Proxy) killLeftovers() {
	stopped := map[int]bool{}
	for _, s := range h.p.Statuses() {
		if s.Status == "stopped" {
			stopped[s.Pid] = true
		}
	}
	for _, s := range h.p.Statuses() {
		pid := s.Pid
		if s.Status != "started" || pid <= 0 || stopped[pid] {
			continue
		}
		if strings.HasPrefix(proctest.Cmdline(pid), "[cfk ") || strings.HasPrefix(proctest.Comm(pid), "[cfk ") {
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// lockedBuffer collects a process's output, written by exec's copying
// goroutine and read by the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
