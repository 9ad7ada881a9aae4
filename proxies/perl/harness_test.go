// Package perlproxy_test tests cfk-proxy.pl, the Perl proxy, as a real
// process: a fake cfkd (the harness) gives it the three pipes of
// proxies/PROTOCOL.md and listening sockets, sends it JSON commands, and
// reads its statuses and log lines. The services are small Perl files the
// tests write; what they print and what /proc says about them is checked.
package perlproxy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proxyScript is the program under test.
var proxyScript, _ = filepath.Abs("cfk-proxy.pl")

// waitTimeout bounds every wait on the proxy.
const waitTimeout = 10 * time.Second

// Status is one status line, as the proxy writes it.
type Status struct {
	Status     string `json:"status"`
	Name       string `json:"name"`
	Pid        int    `json:"pid"`
	ExitStatus *int   `json:"exit_status"`
}

// lockedBuffer collects the proxy's own stdout and stderr.
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

// options shape one proxy run.
type options struct {
	preload string   // the preload's Perl source ("1;" when empty)
	sockets []string // listening TCP sockets handed over, by name
	// socketsFirst puts the sockets at fds 3.. and the pipes after them,
	// so that a child asking for them in another order needs fds swapped.
	socketsFirst bool
	pauseLogs    bool     // do not read the log pipe until resumeLogs
	env          []string // more environment for the proxy
}

// harness is a fake cfkd with one proxy.
type harness struct {
	t       *testing.T
	dir     string
	cmd     *exec.Cmd
	cmdW    *os.File
	output  lockedBuffer
	done    chan struct{}
	waitErr error
	socks   map[string]net.Listener

	mu       sync.Mutex
	statuses []Status
	logs     []string
	resume   chan struct{}
}

// startProxy runs cfk-proxy.pl with a fresh preload, pipes and sockets.
func startProxy(t *testing.T, o options) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), done: make(chan struct{}), socks: map[string]net.Listener{},
		resume: make(chan struct{})}
	if o.preload == "" {
		o.preload = "1;\n"
	}
	preload := h.write("preload.pl", o.preload)

	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	logR, logW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var sockFiles []*os.File
	for _, name := range o.sockets {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		h.socks[name] = l
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		sockFiles = append(sockFiles, f)
	}
	pipes := []*os.File{cmdR, statusW, logW}
	var extra []*os.File
	if o.socketsFirst {
		extra = append(append(extra, sockFiles...), pipes...)
	} else {
		extra = append(append(extra, pipes...), sockFiles...)
	}
	fdOf := func(f *os.File) string {
		for i, e := range extra {
			if e == f {
				return strconv.Itoa(3 + i)
			}
		}
		panic("not passed")
	}
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "_CFK_") && !strings.HasPrefix(kv, "LISTEN_") {
			env = append(env, kv)
		}
	}
	env = append(env, "_CFK_COMMAND_FD="+fdOf(cmdR), "_CFK_STATUS_FD="+fdOf(statusW), "_CFK_LOG_FD="+fdOf(logW))
	for i, name := range o.sockets {
		env = append(env, "_CFK_SOCK_"+name+"="+fdOf(sockFiles[i]))
	}
	env = append(env, o.env...)

	h.cmd = exec.Command("perl", proxyScript, "--preload", preload)
	h.cmd.Env = env
	h.cmd.Dir = h.dir
	h.cmd.ExtraFiles = extra
	h.cmd.Stdout = &h.output
	h.cmd.Stderr = &h.output
	// Its own process group, as under cfkd: a signal to the test's group
	// does not reach it.
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range append(pipes, sockFiles...) {
		f.Close()
	}
	h.cmdW = cmdW
	go func() { h.waitErr = h.cmd.Wait(); close(h.done) }()
	go func() {
		sc := bufio.NewScanner(statusR)
		for sc.Scan() {
			var st Status
			if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
				st = Status{Status: "malformed: " + sc.Text()}
			}
			h.mu.Lock()
			h.statuses = append(h.statuses, st)
			h.mu.Unlock()
		}
		statusR.Close()
	}()
	if !o.pauseLogs {
		close(h.resume)
	}
	go func() {
		<-h.resume
		br := bufio.NewReaderSize(logR, 1<<20)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				h.mu.Lock()
				h.logs = append(h.logs, strings.TrimSuffix(line, "\n"))
				h.mu.Unlock()
			}
			if err != nil {
				break
			}
		}
		logR.Close()
	}()
	t.Cleanup(h.cleanup)
	return h
}

// cleanup kills whatever a failed test left behind.
func (h *harness) cleanup() {
	h.cmdW.Close()
	for _, st := range h.allStatuses() {
		if st.Status == "started" && strings.HasPrefix(cmdline(st.Pid), "[cfk ") {
			syscall.Kill(-st.Pid, syscall.SIGKILL)
			syscall.Kill(st.Pid, syscall.SIGKILL)
		}
	}
	select {
	case <-h.done:
	default:
		h.cmd.Process.Kill()
		<-h.done
	}
	for _, l := range h.socks {
		l.Close()
	}
	// A Perl warning from the proxy itself is a bug.
	if out := h.output.String(); strings.Contains(out, filepath.Base(proxyScript)+" line ") {
		h.t.Errorf("the proxy warned:\n%s", out)
	}
	if h.t.Failed() {
		h.t.Logf("proxy output:\n%s", h.output.String())
		h.t.Logf("proxy log lines:\n%s", strings.Join(h.allLogs(), "\n"))
	}
}

func (h *harness) write(name, content string) string {
	h.t.Helper()
	p := filepath.Join(h.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// send writes one command line (a JSON value, or anything).
func (h *harness) send(v any) {
	h.t.Helper()
	var line []byte
	if s, ok := v.(string); ok {
		line = []byte(s)
	} else {
		var err error
		if line, err = json.Marshal(v); err != nil {
			h.t.Fatal(err)
		}
	}
	if _, err := h.cmdW.Write(append(line, '\n')); err != nil {
		h.t.Fatalf("send: %v", err)
	}
}

// start sends a start command; extra fields go in as they are.
func (h *harness) start(name string, cmd any, extra map[string]any) {
	h.t.Helper()
	c := map[string]any{"command": "start", "name": name, "cmd": cmd, "env": map[string]string{},
		"tie_stdin_to": nil, "ignore_stdout": 0, "ignore_stderr": 0, "no_new_session": 0}
	for k, v := range extra {
		c[k] = v
	}
	h.send(c)
}

func (h *harness) stop(name string) {
	h.t.Helper()
	h.send(map[string]string{"command": "stop", "name": name})
}

func (h *harness) allStatuses() []Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Status(nil), h.statuses...)
}

func (h *harness) allLogs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.logs...)
}

func (h *harness) resumeLogs() { close(h.resume) }

// waitStatus waits for a status of a service (and pid, unless 0).
func (h *harness) waitStatus(name, status string, pid int) Status {
	h.t.Helper()
	var found Status
	waitFor(h.t, waitTimeout, fmt.Sprintf("status %s of %s", status, name), func() bool {
		for _, st := range h.allStatuses() {
			if st.Name == name && st.Status == status && (pid == 0 || st.Pid == pid) {
				found = st
				return true
			}
		}
		return false
	})
	return found
}

// started waits for a service's started status and checks its pid.
func (h *harness) started(name string) int {
	h.t.Helper()
	st := h.waitStatus(name, "started", 0)
	if st.Pid <= 0 {
		h.t.Fatalf("started status with pid %d", st.Pid)
	}
	return st.Pid
}

// stopped waits for the stopped status of a pid and returns its wait status.
func (h *harness) stopped(name string, pid int) int {
	h.t.Helper()
	st := h.waitStatus(name, "stopped", pid)
	if st.ExitStatus == nil {
		h.t.Fatalf("stopped status without exit_status: %+v", st)
	}
	return *st.ExitStatus
}

// waitLog waits for a log line starting with prefix and returns it.
func (h *harness) waitLog(prefix string) string {
	h.t.Helper()
	var found string
	waitFor(h.t, waitTimeout, "log line "+strconv.Quote(prefix), func() bool {
		for _, l := range h.allLogs() {
			if strings.HasPrefix(l, prefix) {
				found = l
				return true
			}
		}
		return false
	})
	return found
}

// waitExit waits for the proxy to exit and returns its exit code.
func (h *harness) waitExit(d time.Duration) int {
	h.t.Helper()
	select {
	case <-h.done:
	case <-time.After(d):
		h.t.Fatalf("the proxy did not exit within %v", d)
	}
	if h.waitErr == nil {
		return 0
	}
	if ee, ok := h.waitErr.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	h.t.Fatalf("wait: %v", h.waitErr)
	return -1
}

func (h *harness) pid() int { return h.cmd.Process.Pid }

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

// --- /proc -----------------------------------------------------------

// procStat returns the fields of /proc/PID/stat after the command name:
// [0] state, [1] ppid, [2] pgrp, [3] session.
func procStat(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}

func ppidOf(pid int) int {
	f := procStat(pid)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

func sessionOf(pid int) int {
	f := procStat(pid)
	if len(f) < 4 {
		return 0
	}
	n, _ := strconv.Atoi(f[3])
	return n
}

// alive says whether pid is a live process (not gone, not a zombie).
func alive(pid int) bool {
	f := procStat(pid)
	return len(f) > 0 && f[0] != "Z"
}

// cmdline is /proc/PID/cmdline with its NULs as spaces, trimmed.
func cmdline(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// openFds lists a process's open fds.
func openFds(t *testing.T, pid int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		fds = append(fds, n)
	}
	sort.Ints(fds)
	return fds
}

func fdTarget(pid, fd int) string {
	s, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
	return s
}

// fdCloexec says whether an fd has close-on-exec (flags in fdinfo, octal).
func fdCloexec(t *testing.T, pid, fd int) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			flags, err := strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			if err != nil {
				t.Fatal(err)
			}
			return flags&syscall.O_CLOEXEC != 0
		}
	}
	t.Fatalf("no flags in fdinfo %d of %d", fd, pid)
	return false
}
