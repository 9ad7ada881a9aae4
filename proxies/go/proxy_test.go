package cfkproxy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/controlfreak-go/cfk/internal/cfkdtest"
	"github.com/controlfreak-go/cfk/internal/fakecfkd"
	"github.com/controlfreak-go/cfk/internal/proctest"
)

func TestStartServeStop(t *testing.T) {
	const size = 1<<20 + 123 // not a whole number of pages
	p := startTestProxy(t, size, []string{"web", "fcgi"})
	st, err := p.StartService(statusWait, map[string]any{
		"name": "w1", "cmd": "serve now", "env": map[string]any{"K": "V", "N": 7},
		"tie_stdin_to": "fcgi", "sockets": []string{"web"},
		"ignore_stdout": 0, "ignore_stderr": "", "no_new_session": nil,
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "started" || st.Pid <= 0 || st.ExitStatus != nil {
		t.Fatalf("status %s, want started with a pid", st.Raw)
	}
	if want := fmt.Sprintf(`{"status":"started","name":"w1","pid":%d}`, st.Pid); st.Raw != want {
		t.Errorf("status line %s, want %s", st.Raw, want)
	}
	pid := st.Pid

	t.Run("parent and session", func(t *testing.T) {
		st := proctest.ReadStat(t, pid)
		if st.Parent != p.Cmd.Process.Pid {
			t.Errorf("worker's parent is %d, want the proxy %d", st.Parent, p.Cmd.Process.Pid)
		}
		if st.Group != pid || st.Session != pid {
			t.Errorf("worker's group %d and session %d, want its own (%d)", st.Group, st.Session, pid)
		}
	})

	info := getInfo(t, p.Sockets["web"].Addr)
	t.Run("shared memory", func(t *testing.T) {
		sum := sha256.Sum256(testPattern(size))
		if info.SharedLen != size || info.SharedSHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("worker's Shared has %d bytes, sha256 %s; Preload wrote %d bytes, sha256 %x",
				info.SharedLen, info.SharedSHA256, size, sum)
		}
		maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, l := range strings.Split(string(maps), "\n") {
			if strings.Contains(l, "/memfd:"+memfdName) {
				found = true
				if f := strings.Fields(l); f[1] != "r--s" {
					t.Errorf("shared memory mapped %s, want r--s: %s", f[1], l)
				}
			}
		}
		if !found {
			t.Errorf("no memfd mapping in the worker's maps:\n%s", maps)
		}
	})
	t.Run("sealed", func(t *testing.T) {
		seals := proxyMemfdSeals(t, p.Cmd.Process.Pid)
		if seals != requiredSeals {
			t.Errorf("seals %#x, want %#x", seals, requiredSeals)
		}
	})
	t.Run("LISTEN_FDS", func(t *testing.T) {
		if info.ListenPid != strconv.Itoa(pid) {
			t.Errorf("LISTEN_PID=%q, want the worker's pid %d", info.ListenPid, pid)
		}
		if info.ListenFds != "1" || info.ListenFdNames != "web" || !slices.Equal(info.Names, []string{"web"}) {
			t.Errorf("LISTEN_FDS=%q LISTEN_FDNAMES=%q names %q, want 1, web", info.ListenFds, info.ListenFdNames, info.Names)
		}
	})
	t.Run("fds", func(t *testing.T) {
		want := map[int]string{
			0: proctest.Target(t, p.Sockets["fcgi"].File),
			3: proctest.Target(t, p.Sockets["web"].File),
			4: "/memfd:" + memfdName + " (deleted)",
		}
		for fd := range 3 {
			if fd > 0 && !strings.HasPrefix(info.Fds[fd], "pipe:") {
				t.Errorf("fd %d is %q, want a pipe to the proxy", fd, info.Fds[fd])
			}
		}
		for fd, target := range info.Fds {
			if fd == 1 || fd == 2 {
				continue
			}
			if want[fd] != target {
				t.Errorf("worker started with fd %d = %q, want %q", fd, target, want[fd])
			}
		}
		for fd, target := range want {
			if _, ok := info.Fds[fd]; !ok {
				t.Errorf("worker started without fd %d (%s)", fd, target)
			}
		}
		// After Main, the memfd is closed: only its mapping remains.
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, e := range ents {
			target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
			if strings.Contains(target, "memfd:") {
				t.Errorf("worker still holds the memfd as fd %s", e.Name())
			}
		}
	})
	t.Run("O_NONBLOCK", func(t *testing.T) {
		// The flag is the shared description's: a worker may set it (Go's
		// net does) but must never clear it, even for a moment.
		for _, name := range []string{"web", "fcgi"} {
			fl, err := unix.FcntlInt(p.Sockets[name].File.Fd(), unix.F_GETFL, 0)
			if err != nil {
				t.Fatal(err)
			}
			if fl&unix.O_NONBLOCK == 0 {
				t.Errorf("socket %s is blocking after a Go worker adopted it", name)
			}
		}
	})
	t.Run("stdin", func(t *testing.T) {
		if !info.HasStdin {
			t.Error("Worker.Stdin is nil, want the tie_stdin_to socket")
		}
		if got := getInfo(t, p.Sockets["fcgi"].Addr); got.Pid != pid {
			t.Errorf("the tied socket is served by pid %d, want %d", got.Pid, pid)
		}
	})
	t.Run("env", func(t *testing.T) {
		env := map[string]string{}
		for _, kv := range info.Env {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
			if strings.HasPrefix(k, "_CFK") {
				t.Errorf("worker's environment has %s", kv)
			}
		}
		for k, v := range map[string]string{"K": "V", "N": "7", "CONTROL_FREAK_ENABLED": "1", "CONTROL_FREAK_SERVICE": "w1"} {
			if env[k] != v {
				t.Errorf("worker's %s=%q, want %q", k, env[k], v)
			}
		}
		if !slices.Equal(info.Cmd, []string{"serve", "now"}) {
			t.Errorf("Worker.Cmd %q, want [serve now]", info.Cmd)
		}
	})

	n := len(p.Statuses())
	if err := p.Send(map[string]any{"command": "stop", "name": "w1"}); err != nil {
		t.Fatal(err)
	}
	st, err = p.WaitStatus(statusWait, n, func(s fakecfkd.Status) bool { return s.Name == "w1" })
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`{"status":"stopped","name":"w1","pid":%d,"exit_status":15}`, pid); st.Raw != want {
		t.Errorf("status line %s, want %s", st.Raw, want)
	}
	cfkdtest.WaitFor(t, statusWait, "worker gone", func() bool { return !proctest.Alive(pid) })
}

// proxyMemfdSeals opens the proxy's memfd through /proc and reads its seals.
func proxyMemfdSeals(t *testing.T, proxyPid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", proxyPid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		target, _ := os.Readlink(dir + "/" + e.Name())
		if !strings.HasPrefix(target, "/memfd:"+memfdName) {
			continue
		}
		f, err := os.Open(dir + "/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
		if err != nil {
			t.Fatal(err)
		}
		// A sealed memfd refuses writes, even through a new open file.
		if _, err := f.WriteAt([]byte("x"), 0); err == nil {
			t.Error("writing to the sealed memfd succeeded")
		}
		return seals
	}
	t.Fatalf("the proxy holds no memfd")
	return 0
}

func TestOutputBecomesLogLines(t *testing.T) {
	p := startTestProxy(t, 0, nil)
	if _, err := p.StartService(statusWait, map[string]any{"name": "talk", "cmd": []string{"print", "hello"}}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"out:talk:hello stdout", "err:talk:hello stderr"} {
		if _, err := p.WaitLog(statusWait, func(l string) bool { return l == want }); err != nil {
			t.Error(err)
		}
	}

	// ignore_stdout: stdout goes to /dev/null, stderr still logged.
	if _, err := p.StartService(statusWait, map[string]any{"name": "quiet", "cmd": []string{"print", "shh"}, "ignore_stdout": true}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitLog(statusWait, func(l string) bool { return l == "err:quiet:shh stderr" }); err != nil {
		t.Fatal(err)
	}
	for _, l := range p.Logs() {
		if strings.HasPrefix(l, "out:quiet:") {
			t.Errorf("ignored stdout was logged: %q", l)
		}
	}
}

func TestExitStatus(t *testing.T) {
	p := startTestProxy(t, 10, nil)
	for _, c := range []struct {
		code int
		want int
	}{{3, 768}, {0, 0}, {255, 255 << 8}} {
		name := "exit" + strconv.Itoa(c.code)
		started, err := p.StartService(statusWait, map[string]any{"name": name, "cmd": []any{"exit", strconv.Itoa(c.code)}})
		if err != nil {
			t.Fatal(err)
		}
		st, err := p.WaitStatus(statusWait, 0, func(s fakecfkd.Status) bool { return s.Name == name && s.Status == "stopped" })
		if err != nil {
			t.Fatal(err)
		}
		if st.Pid != started.Pid || st.ExitStatus == nil || *st.ExitStatus != c.want {
			t.Errorf("exit %d: status %s, want pid %d exit_status %d", c.code, st.Raw, started.Pid, c.want)
		}
	}
}

func TestBadCommands(t *testing.T) {
	p := startTestProxy(t, 10, nil)
	for _, c := range []struct{ line, want string }{
		{`{not json`, "err:-:parse error in command"},
		{`{"command":"dance","name":"x"}`, "err:-:couldn't understand command"},
		{`{"command":"start","name":"a:b"}`, "err:-:start command"},
		{`{"command":"stop","name":"ghost"}`, "err:-:stop ghost: no such service"},
	} {
		if err := p.SendLine(c.line); err != nil {
			t.Fatal(err)
		}
		if _, err := p.WaitLogPrefix(statusWait, c.want); err != nil {
			t.Errorf("%s: %v", c.line, err)
		}
	}
	// The proxy carries on.
	if _, err := p.StartService(statusWait, map[string]any{"name": "after", "cmd": "serve"}); err != nil {
		t.Fatal(err)
	}
	// A second start of a running service is refused, and no status is sent.
	n := len(p.Statuses())
	p.Send(map[string]any{"command": "start", "name": "after", "cmd": "serve"})
	if _, err := p.WaitLogPrefix(statusWait, "err:-:start after: already running"); err != nil {
		t.Error(err)
	}
	if got := p.Statuses()[n:]; len(got) != 0 {
		t.Errorf("second start answered %v", got)
	}
}

func TestUnknownSocketFailsTheStart(t *testing.T) {
	p := startTestProxy(t, 10, []string{"web"})
	st, err := p.StartService(statusWait, map[string]any{"name": "lost", "cmd": "serve", "sockets": []string{"web", "nope"}})
	if err != nil {
		t.Fatal(err)
	}
	stopped, err := p.WaitStatus(statusWait, 0, func(s fakecfkd.Status) bool { return s.Status == "stopped" })
	if err != nil {
		t.Fatal(err)
	}
	if stopped.Pid != st.Pid || *stopped.ExitStatus != 256 {
		t.Errorf("status %s, want pid %d exit_status 256", stopped.Raw, st.Pid)
	}
	if _, err := p.WaitLog(statusWait, func(l string) bool {
		return l == `err:lost:cannot start: sockets: socket "nope" is not passed to the proxy`
	}); err != nil {
		t.Error(err)
	}
}

func TestNoNewSession(t *testing.T) {
	p := startTestProxy(t, 10, []string{"web"})
	st, err := p.StartService(statusWait, map[string]any{"name": "same", "cmd": "serve", "sockets": []string{"web"}, "no_new_session": 1})
	if err != nil {
		t.Fatal(err)
	}
	getInfo(t, p.Sockets["web"].Addr) // serving
	if group, proxyGroup := proctest.ReadStat(t, st.Pid).Group, proctest.ReadStat(t, p.Cmd.Process.Pid).Group; group != proxyGroup {
		t.Errorf("worker's group %d, want the proxy's %d", group, proxyGroup)
	}
	// stop signals the worker alone: the proxy, in the same group, lives.
	p.Send(map[string]any{"command": "stop", "name": "same"})
	stopped, err := p.WaitStatus(statusWait, 0, func(s fakecfkd.Status) bool { return s.Status == "stopped" })
	if err != nil {
		t.Fatal(err)
	}
	if *stopped.ExitStatus != 15 {
		t.Errorf("status %s, want exit_status 15", stopped.Raw)
	}
	if exited, _ := p.Wait(200 * time.Millisecond); exited {
		t.Fatal("stopping a no_new_session worker killed the proxy")
	}
}

// shutdownTest starts two workers, makes the proxy shut down and checks
// that both are reported and gone and that the proxy exited 0.
func shutdownTest(t *testing.T, stop func(p *fakecfkd.Proxy), cmd string, wantStatus int) {
	p := startTestProxy(t, 10, []string{"web"})
	var pids []int
	for _, name := range []string{"a", "b"} {
		st, err := p.StartService(statusWait, map[string]any{"name": name, "cmd": cmd, "sockets": []string{"web"}})
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, st.Pid)
	}
	getInfo(t, p.Sockets["web"].Addr) // serving
	if cmd == "stubborn" {
		// Both must be in Serve, TERM caught, before the TERM.
		for _, name := range []string{"a", "b"} {
			if _, err := p.WaitLog(statusWait, func(l string) bool { return l == "out:"+name+":ready" }); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop(p)
	exited, err := p.Wait(exitWait)
	if !exited {
		t.Fatal("proxy still running")
	}
	if err != nil {
		t.Errorf("proxy exited with %v, want 0", err)
	}
	for i, pid := range pids {
		if proctest.Alive(pid) {
			t.Errorf("worker %d still running", pid)
		}
		st, err := p.WaitStatus(time.Second, 0, func(s fakecfkd.Status) bool { return s.Status == "stopped" && s.Pid == pid })
		if err != nil {
			t.Errorf("worker %d: %v", i, err)
			continue
		}
		if *st.ExitStatus != wantStatus {
			t.Errorf("status %s, want exit_status %d", st.Raw, wantStatus)
		}
	}
}

func TestTermStopsWorkers(t *testing.T) {
	shutdownTest(t, func(p *fakecfkd.Proxy) { p.Signal(syscall.SIGTERM) }, "serve", 15)
}

func TestEOFStopsWorkers(t *testing.T) {
	shutdownTest(t, func(p *fakecfkd.Proxy) { p.CloseCommands() }, "serve", 15)
}

func TestStubbornWorkersAreKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the proxy's stopWait")
	}
	shutdownTest(t, func(p *fakecfkd.Proxy) { p.Signal(syscall.SIGINT) }, "stubborn", int(syscall.SIGKILL))
}

func TestPreloadFailure(t *testing.T) {
	out, err := os.CreateTemp(t.TempDir(), "proxy-stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	p := startTestProxyOut(t, out, 10, nil, envTestPreloadFail+"=1")
	exited, err := p.Wait(exitWait)
	if !exited {
		t.Fatal("proxy still running")
	}
	var ee *exec.ExitError
	if err == nil || !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("proxy exited with %v, want exit status 1", err)
	}
	if _, err := p.WaitLogPrefix(time.Second, "err:-:preload: the test asked Preload to fail"); err != nil {
		t.Error(err)
	}
	// And on its stderr, which cfkd logs as proxy.NAME.err.
	if b, _ := os.ReadFile(out.Name()); string(b) != "cfkproxy: preload: the test asked Preload to fail\n" {
		t.Errorf("proxy's stderr %q", b)
	}
}
