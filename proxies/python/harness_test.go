package pythonproxy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The fds the fake cfkd hands the proxy, in ExtraFiles order: fd 3 is
// the command pipe, 4 the status pipe, 5 the log pipe, 6.. the sockets.
const (
	commandFd      = 3
	statusFd       = 4
	logFd          = 5
	firstSocketFd  = 6
	waitLong       = 10 * time.Second
	pollEvery      = 10 * time.Millisecond
	proxyStopLimit = 15 * time.Second
)

// status is one status line of the proxy.
type status struct {
	Status     string `json:"status"`
	Name       string `json:"name"`
	Pid        int    `json:"pid"`
	ExitStatus *int   `json:"exit_status"`
}

// socket is a listening socket the fake cfkd passes to the proxy.
type socket struct {
	name string
	file *os.File
	addr string // host:port
}

type options struct {
	python   string
	sockets  []socket
	args     []string // after --preload cfktestapp --path testdata
	holdLogs bool     // do not read the log pipe until readLogs
}

// fakeCfkd is cfkd's end of one running proxy.
type fakeCfkd struct {
	t        *testing.T
	cmd      *exec.Cmd
	commands *os.File
	logR     *os.File
	stderr   *lockedBuffer

	mu       sync.Mutex
	statuses []status
	logs     []string
	bad      []string

	exited  chan struct{}
	waitErr error
	readers sync.WaitGroup
	logOnce sync.Once
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var (
	proxyPath, _   = filepath.Abs("cfk_proxy.py")
	testdataDir, _ = filepath.Abs("testdata")
)

// startProxy runs cfk_proxy.py as cfkd would, preloading testdata's
// cfktestapp.
func startProxy(t *testing.T, o options) *fakeCfkd {
	t.Helper()
	cmdR, cmdW := pipe(t)
	statusR, statusW := pipe(t)
	logR, logW := pipe(t)
	args := append([]string{proxyPath, "--preload", "cfktestapp", "--path", testdataDir}, o.args...)
	cmd := exec.Command(o.python, args...)
	cmd.Dir = t.TempDir()
	cmd.ExtraFiles = []*os.File{cmdR, statusW, logW}
	env := append(withoutEnv(os.Environ(), "PYTHONUNBUFFERED"),
		fmt.Sprintf("_CFK_COMMAND_FD=%d", commandFd),
		fmt.Sprintf("_CFK_STATUS_FD=%d", statusFd),
		fmt.Sprintf("_CFK_LOG_FD=%d", logFd),
		"CFKD_HOME="+cmd.Dir)
	for i, s := range o.sockets {
		cmd.ExtraFiles = append(cmd.ExtraFiles, s.file)
		env = append(env, fmt.Sprintf("_CFK_SOCK_%s=%d", s.name, firstSocketFd+i))
	}
	cmd.Env = env
	h := &fakeCfkd{t: t, cmd: cmd, commands: cmdW, logR: logR, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stdout = h.stderr
	cmd.Stderr = h.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start proxy: %v", err)
	}
	for _, f := range []*os.File{cmdR, statusW, logW} {
		f.Close()
	}
	go func() {
		h.waitErr = cmd.Wait()
		close(h.exited)
	}()
	h.readers.Add(1)
	go h.readStatuses(statusR)
	if !o.holdLogs {
		h.readLogs()
	}
	t.Cleanup(h.shutdown)
	return h
}

func pipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	return r, w
}

// listenTCP makes a listening socket on a free port of 127.0.0.1 without
// Go's poller, so that nothing but the worker accepts on it.
func listenTCP(t *testing.T, name string) socket {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "socket:"+name)
	t.Cleanup(func() { f.Close() })
	return socket{name: name, file: f, addr: fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)}
}

func (h *fakeCfkd) readStatuses(r *os.File) {
	defer h.readers.Done()
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var st status
		if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
			h.mu.Lock()
			h.bad = append(h.bad, sc.Text())
			h.mu.Unlock()
			continue
		}
		h.mu.Lock()
		h.statuses = append(h.statuses, st)
		h.mu.Unlock()
	}
}

// readLogs starts reading the log pipe.
func (h *fakeCfkd) readLogs() {
	h.logOnce.Do(func() {
		h.readers.Add(1)
		go func() {
			defer h.readers.Done()
			defer h.logR.Close()
			sc := bufio.NewScanner(h.logR)
			sc.Buffer(make([]byte, 64<<10), 64<<10)
			for sc.Scan() {
				h.mu.Lock()
				h.logs = append(h.logs, sc.Text())
				h.mu.Unlock()
			}
		}()
	})
}

// shutdown closes the command pipe (cfkd is gone) and waits for the proxy.
func (h *fakeCfkd) shutdown() {
	h.commands.Close()
	h.readLogs()
	select {
	case <-h.exited:
	case <-time.After(proxyStopLimit):
		h.t.Errorf("proxy still running %v after EOF on its commands; killing it", proxyStopLimit)
		h.cmd.Process.Kill()
		<-h.exited
	}
	h.readers.Wait()
	if h.t.Failed() {
		h.t.Logf("proxy output:\n%s", h.stderr.String())
		h.mu.Lock()
		h.t.Logf("statuses: %+v\nlogs:\n%s", h.statuses, strings.Join(h.logs, "\n"))
		h.mu.Unlock()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.bad) > 0 {
		h.t.Errorf("malformed status lines: %q", h.bad)
	}
}

func (h *fakeCfkd) pid() int { return h.cmd.Process.Pid }

// send writes one command line.
func (h *fakeCfkd) send(cmd any) {
	h.t.Helper()
	b, err := json.Marshal(cmd)
	if err != nil {
		h.t.Fatal(err)
	}
	h.sendRaw(string(b))
}

func (h *fakeCfkd) sendRaw(line string) {
	h.t.Helper()
	if _, err := h.commands.Write([]byte(line + "\n")); err != nil {
		h.t.Fatalf("write command: %v", err)
	}
}

// start starts a service and returns its pid once the proxy says started.
func (h *fakeCfkd) start(name string, cmd any, extra map[string]any) int {
	h.t.Helper()
	c := map[string]any{"command": "start", "name": name, "cmd": cmd, "env": map[string]string{},
		"tie_stdin_to": nil, "ignore_stdout": 0, "ignore_stderr": 0, "no_new_session": 0}
	for k, v := range extra {
		c[k] = v
	}
	h.send(c)
	return h.waitStarted(name)
}

func (h *fakeCfkd) waitStarted(name string) int {
	h.t.Helper()
	var pid int
	h.waitFor("started "+name, func() bool {
		for _, st := range h.statuses {
			if st.Status == "started" && st.Name == name {
				pid = st.Pid
				return true
			}
		}
		return false
	})
	return pid
}

// waitStopped returns the raw wait status reported for pid.
func (h *fakeCfkd) waitStopped(name string, pid int) int {
	h.t.Helper()
	var ws int
	h.waitFor(fmt.Sprintf("stopped %s %d", name, pid), func() bool {
		for _, st := range h.statuses {
			if st.Status == "stopped" && st.Pid == pid {
				if st.Name != name || st.ExitStatus == nil {
					h.t.Errorf("bad stopped status %+v", st)
					return true
				}
				ws = *st.ExitStatus
				return true
			}
		}
		return false
	})
	return ws
}

// waitLog returns the first log line with this prefix.
func (h *fakeCfkd) waitLog(prefix string) string {
	h.t.Helper()
	var line string
	h.waitFor("log line "+strconv.Quote(prefix), func() bool {
		for _, l := range h.logs {
			if strings.HasPrefix(l, prefix) {
				line = l
				return true
			}
		}
		return false
	})
	return line
}

// lines returns the messages logged as TYPE:NAME:.
func (h *fakeCfkd) lines(kind, name string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, l := range h.logs {
		if msg, ok := strings.CutPrefix(l, kind+":"+name+":"); ok {
			out = append(out, msg)
		}
	}
	return out
}

// waitFor polls cond, with h.mu held, until it holds or waitLong passes.
func (h *fakeCfkd) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		h.mu.Lock()
		ok := cond()
		h.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(pollEvery)
	}
}

// waitExit waits for the proxy to exit and returns its exit code.
func (h *fakeCfkd) waitExit() int {
	h.t.Helper()
	select {
	case <-h.exited:
	case <-time.After(proxyStopLimit):
		h.t.Fatalf("proxy did not exit within %v", proxyStopLimit)
	}
	return h.cmd.ProcessState.ExitCode()
}

// procStat returns a process's parent pid, process group and session.
func procStat(t *testing.T, pid int) (ppid, pgrp, session int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the ")" that ends comm: state ppid pgrp session.
	rest := string(b[bytes.LastIndexByte(b, ')')+2:])
	f := strings.Fields(rest)
	ppid, _ = strconv.Atoi(f[1])
	pgrp, _ = strconv.Atoi(f[2])
	session, _ = strconv.Atoi(f[3])
	return ppid, pgrp, session
}

// procFds maps each open fd of pid to what it points at.
func procFds(t *testing.T, pid int) map[int]string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fds := map[int]string{}
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		fds[n] = target
	}
	return fds
}

// socketTarget is what /proc/PID/fd/N shows for the socket f.
func socketTarget(t *testing.T, f *os.File) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("socket:[%d]", st.Ino)
}

// pythons lists the interpreters to test: python3 on PATH, and Debian's
// /usr/bin/python3 when it is another one.
func pythons(t *testing.T) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		b, err := exec.Command(p, "-c", "import sys; print(sys.executable)").Output()
		if err != nil {
			continue
		}
		exe := strings.TrimSpace(string(b))
		if real, err := filepath.EvalSymlinks(exe); err == nil && !seen[real] {
			seen[real] = true
			out = append(out, exe)
		}
	}
	if len(out) == 0 {
		t.Skip("no python3")
	}
	return out
}

// withoutEnv drops a variable from env. The tests run the proxy without
// PYTHONUNBUFFERED, so that output buffering is the default one.
func withoutEnv(env []string, key string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}
