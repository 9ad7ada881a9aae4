package examples

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/controlfreak-go/cfk/console"
)

// The harness: real programs in real processes. Every process a test
// starts is stopped by a t.Cleanup, failed test or not, and every wait is
// a poll with a deadline.

const (
	startTimeout   = 15 * time.Second // a daemon, a proxy or a pool coming up
	stopTimeout    = 10 * time.Second // TERM, then KILL
	pollInterval   = 10 * time.Millisecond
	httpTimeout    = 2 * time.Second
	logTailBytes   = 8 << 10 // how much of a log a failed test shows
	consoleTimeout = 5 * time.Second
)

// requireTool finds a program the test drives. Missing, it fails the test
// under CI (CI=true), where scripts/install-test-deps must have installed
// it, and skips it elsewhere.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		missing(t, name+" is not installed")
	}
	return path
}

// requirePerlModule is requireTool for a Perl module.
func requirePerlModule(t *testing.T, module string) {
	t.Helper()
	perl := requireTool(t, "perl")
	if err := exec.Command(perl, "-M"+module, "-e1").Run(); err != nil {
		missing(t, "the Perl module "+module+" is not installed")
	}
}

func missing(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s, and CI must have it: run scripts/install-test-deps", what)
	}
	t.Skipf("%s (scripts/install-test-deps installs it, as root)", what)
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(pollInterval)
	}
}

// freePort asks the kernel for a free loopback port, for the programs that
// must be told a port (nginx, perlbal, systemd-socket-activate). cfkd's own
// sockets use port 0 and report the real one.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// tail is the end of a log file, for the message of a failed test.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
	}
	return string(b)
}

// proc is a program the test runs directly (nginx, perlbal, wrk, cfkd). It
// gets its own process group, so that stopping it also stops what it
// forked (nginx's workers), and its output goes to a file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // the exit, once done is closed
}

// startProc runs argv with extra environment, output to dir/NAME.out.
func startProc(t *testing.T, dir, name string, env []string, argv ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: filepath.Join(dir, name+".out"), done: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(cleanEnv(os.Environ()), env...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	out.Close()
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("--- %s output (%s):\n%s", name, p.log, tail(p.log))
		}
	})
	return p
}

// cleanEnv drops the service manager's variables, should the tests run
// under one: a cfkd started here must not notify it or take its sockets.
func cleanEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES":
			continue
		}
		out = append(out, kv)
	}
	return out
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the process group and waits; KILL after stopTimeout.
// It reports whether the process had to be killed.
func (p *proc) stop(sig syscall.Signal) (killed bool) {
	if p.exited() {
		return false
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
		return false
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return true
	}
}

// cfkd is a running cfkd with its own home.
type cfkd struct {
	t    *testing.T
	home string
	addr string
	p    *proc
	c    *console.Client
	pids map[int]bool // every service pid seen, checked gone at the end
}

// startCfkd runs cfkd in the foreground with a fresh home and config, and
// waits for its console.
func startCfkd(t *testing.T, config string, env []string) *cfkd {
	t.Helper()
	d := launchCfkd(t, config, env)
	d.waitConsole()
	return d
}

// launchCfkd starts cfkd and returns at once. prefix runs before cfkd
// (systemd-socket-activate and its flags) and must exec cfkd in place.
func launchCfkd(t *testing.T, config string, env []string, prefix ...string) *cfkd {
	t.Helper()
	home := t.TempDir()
	d := &cfkd{t: t, home: home, addr: "unix:" + filepath.Join(home, "sock"), pids: map[int]bool{}}
	cfg := writeFile(t, filepath.Join(home, "cfkd.conf"), config)
	argv := append(append([]string{}, prefix...), bin.cfkd, "--home", home, "-a", d.addr, "-c", cfg)
	// Registered before startProc's, so this runs after cfkd has been
	// stopped: no service may outlive it.
	t.Cleanup(func() {
		if d.c != nil {
			d.c.Close()
		}
		for pid := range d.pids {
			if alive(pid) {
				t.Errorf("service pid %d outlived cfkd", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			t.Logf("--- cfkd.log:\n%s", tail(filepath.Join(home, "cfkd.log")))
		}
	})
	d.p = startProc(t, home, "cfkd", env, argv...)
	return d
}

// waitConsole waits until cfkd's management socket answers.
func (d *cfkd) waitConsole() {
	d.t.Helper()
	waitFor(d.t, startTimeout, "cfkd's console", func() bool {
		if d.p.exited() {
			d.t.Fatalf("cfkd exited at start: %v\n%s", d.p.err, tail(d.p.log))
		}
		c, err := console.Dial(d.addr, consoleTimeout)
		if err != nil {
			return false
		}
		d.c = c
		return true
	})
}

// redial drops the console connection and waits until cfkd answers on a
// new one: after an in-place upgrade, the connection the old image served
// is gone.
func (d *cfkd) redial() {
	d.t.Helper()
	if d.c != nil {
		d.c.Close()
		d.c = nil
	}
	d.waitConsole()
}

// do sends one line to the console.
func (d *cfkd) do(line string) ([]string, error) { return d.c.Do(line) }

func (d *cfkd) must(line string) []string {
	d.t.Helper()
	out, err := d.do(line)
	if err != nil {
		d.t.Fatalf("cfkd: %q: %v", line, err)
	}
	return out
}

// svcStatus is one line of `command status`.
type svcStatus struct {
	state string
	pid   int
}

func (d *cfkd) status(name string) svcStatus {
	d.t.Helper()
	out := d.must("command status service " + name)
	if len(out) != 1 {
		d.t.Fatalf("status of %s: %q", name, out)
	}
	f := strings.Split(out[0], "\t")
	if len(f) < 3 {
		d.t.Fatalf("status of %s: %q", name, out[0])
	}
	pid, _ := strconv.Atoi(f[2])
	if pid > 0 {
		d.pids[pid] = true
	}
	return svcStatus{state: f[1], pid: pid}
}

// waitRunning waits until every named service is running and returns
// their pids, in order.
func (d *cfkd) waitRunning(names ...string) []int {
	d.t.Helper()
	pids := make([]int, len(names))
	waitFor(d.t, startTimeout, "services running: "+strings.Join(names, ", "), func() bool {
		for i, n := range names {
			s := d.status(n)
			if s.state != "running" || s.pid == 0 {
				return false
			}
			pids[i] = s.pid
		}
		return true
	})
	return pids
}

// waitReplaced waits until a service runs again under a pid other than old.
func (d *cfkd) waitReplaced(name string, old int) int {
	d.t.Helper()
	var pid int
	waitFor(d.t, startTimeout, name+" running again under a new pid", func() bool {
		s := d.status(name)
		pid = s.pid
		return s.state == "running" && s.pid != 0 && s.pid != old
	})
	return pid
}

// sockInfo is one line of `command sockets`.
type sockInfo struct {
	addr, state, services string
}

func (d *cfkd) socket(name string) sockInfo {
	d.t.Helper()
	out := d.must("command sockets " + name)
	if len(out) != 1 {
		d.t.Fatalf("sockets %s: %q", name, out)
	}
	f := strings.Split(out[0], "\t")
	if len(f) < 5 {
		d.t.Fatalf("sockets %s: %q", name, out[0])
	}
	return sockInfo{addr: f[1], state: f[2], services: f[4]}
}

// tcpAddr is the host:port a bound or adopted TCP socket listens on.
func (d *cfkd) tcpAddr(name string) string {
	d.t.Helper()
	s := d.socket(name)
	if s.state == "unbound" {
		d.t.Fatalf("socket %s is not bound: %+v", name, s)
	}
	if _, _, err := net.SplitHostPort(s.addr); err != nil {
		d.t.Fatalf("socket %s: address %q is not host:port", name, s.addr)
	}
	return s.addr
}

// stop sends TERM and checks cfkd exits 0 in time.
func (d *cfkd) stop() {
	d.t.Helper()
	if d.p.stop(syscall.SIGTERM) {
		d.t.Fatalf("cfkd did not exit within %v of TERM", stopTimeout)
	}
	d.checkExit()
}

// waitExit waits for cfkd to exit by itself, and checks it exits 0.
func (d *cfkd) waitExit() {
	d.t.Helper()
	select {
	case <-d.p.done:
	case <-time.After(stopTimeout):
		d.t.Fatalf("cfkd did not exit within %v", stopTimeout)
	}
	d.checkExit()
}

func (d *cfkd) checkExit() {
	d.t.Helper()
	if d.p.err != nil {
		d.t.Fatalf("cfkd exit: %v\n%s", d.p.err, tail(d.p.log))
	}
}

// alive reports whether pid is a live process (not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// ppid is the parent of pid, 0 if unknown.
func ppid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// httpClient opens a new connection for every request, so that each one
// is a fresh accept on the shared socket: that is what spreads requests
// across the pool. network is "tcp" or "unix" (then addr is the path).
func httpClient(network, addr string) *http.Client {
	var d net.Dialer
	return &http.Client{
		Timeout: httpTimeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
		},
	}
}

func get(c *http.Client) (string, error) {
	// The host is a placeholder: the client's dialer picks the address.
	resp, err := c.Get("http://cfkd.test/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

var bodyPid = regexp.MustCompile(`pid (\d+)`)

// pidsAnswering sends requests until done holds for the distinct pids the
// answers named so far, and returns them. A failed request fails the test.
func pidsAnswering(t *testing.T, c *http.Client, what string, done func(seen map[int]bool) bool) map[int]bool {
	t.Helper()
	seen := map[int]bool{}
	waitFor(t, startTimeout, what, func() bool {
		body, err := get(c)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		m := bodyPid.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("answer without a pid: %q", body)
		}
		pid, _ := strconv.Atoi(m[1])
		seen[pid] = true
		return done(seen)
	})
	return seen
}

// pidsServing sends requests until every pid in want has answered one.
func pidsServing(t *testing.T, c *http.Client, want []int) {
	t.Helper()
	pidsAnswering(t, c, fmt.Sprintf("answers from every pid of %v", want), func(seen map[int]bool) bool {
		for _, p := range want {
			if !seen[p] {
				return false
			}
		}
		return true
	})
}

// waitHTTP waits until a front (nginx, perlbal) answers 200.
func waitHTTP(t *testing.T, front *proc, url string) {
	t.Helper()
	c := &http.Client{Timeout: httpTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	waitFor(t, startTimeout, front.name+" answering on "+url, func() bool {
		if front.exited() {
			t.Fatalf("%s exited: %v\n%s", front.name, front.err, tail(front.log))
		}
		resp, err := c.Get(url)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
