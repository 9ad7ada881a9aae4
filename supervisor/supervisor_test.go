package supervisor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/controlfreak-go/cfk/console"
	"github.com/controlfreak-go/cfk/eventlog"
)

type harness struct {
	t       *testing.T
	s       *Supervisor
	log     *eventlog.Logger
	logPath string
	dir     string
}

// newHarness runs a real Supervisor in the test process; it is shut down
// when the test ends, and must have left no process behind.
func newHarness(t *testing.T) *harness {
	t.Helper()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "cfkd.log")
	log, err := eventlog.Open(logPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Home: dir, Log: log, NotifyPath: filepath.Join(dir, "notify.sock")})
	if err != nil {
		t.Fatal(err)
	}
	go s.Run()
	h := &harness{t: t, s: s, log: log, logPath: logPath, dir: dir}
	t.Cleanup(func() {
		s.Shutdown()
		select {
		case <-s.Done():
		case <-time.After(15 * time.Second):
			t.Errorf("supervisor did not shut down")
		}
		log.Close()
	})
	return h
}

func (h *harness) do(line string) ([]string, error) {
	h.t.Helper()
	req, err := console.Parse(line)
	if err != nil {
		return nil, err
	}
	return h.s.Execute(req)
}

func (h *harness) must(line string) []string {
	h.t.Helper()
	out, err := h.do(line)
	if err != nil {
		h.t.Fatalf("%q: %v", line, err)
	}
	return out
}

func (h *harness) mustFail(line, want string) {
	h.t.Helper()
	_, err := h.do(line)
	if err == nil || err.Error() != want {
		h.t.Fatalf("%q: got error %v, want %q", line, err, want)
	}
}

// helperCmd is a cmd= value that runs this test binary in a helper mode.
func helperCmd(mode string, args ...string) string {
	self, _ := os.Executable()
	b, _ := json.Marshal(append([]string{self, "cfkhelper", mode}, args...))
	return string(b)
}

// declare declares a service with the given attributes, fast startwait.
func (h *harness) declare(name, cmd string, attrs ...string) {
	h.t.Helper()
	h.must("service " + name + " cmd=" + cmd)
	h.must("service " + name + " startwait_secs=0.1")
	for _, a := range attrs {
		h.must("service " + name + " " + a)
	}
}

type status struct {
	state, reason string
	pid           int
	fields        []string
}

func (h *harness) status(name string) status {
	h.t.Helper()
	out := h.must("command status service " + name)
	if len(out) != 1 {
		h.t.Fatalf("status of %s: %q", name, out)
	}
	f := strings.Split(out[0], "\t")
	if len(f) != 9 {
		h.t.Fatalf("status line has %d fields: %q", len(f), out[0])
	}
	pid, _ := strconv.Atoi(f[2])
	return status{state: f[1], pid: pid, reason: f[6], fields: f}
}

func (h *harness) waitState(name, state string) status {
	h.t.Helper()
	var st status
	waitFor(h.t, 10*time.Second, name+" "+state, func() bool {
		st = h.status(name)
		return st.state == state
	})
	return st
}

func (h *harness) logText() string {
	h.log.Sync()
	b, _ := os.ReadFile(h.logPath)
	return string(b)
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// A zombie is not alive; the field after "(comm)" is the state.
	s := string(b)
	return !strings.HasPrefix(s[strings.LastIndexByte(s, ')')+2:], "Z")
}

func readLines(path string) []string {
	b, _ := os.ReadFile(path)
	return strings.Fields(string(b))
}

func TestStartRunningStop(t *testing.T) {
	h := newHarness(t)
	h.declare("s1", helperCmd("sleep"))
	if st := h.status("s1"); st.state != "stopped" || st.pid != 0 {
		t.Fatalf("new service: %+v", st)
	}
	if out := h.must("command start service s1"); len(out) != 1 || out[0] != "done 1" {
		t.Fatalf("start answered %q", out)
	}
	st := h.waitState("s1", "running")
	if !alive(st.pid) {
		t.Fatalf("pid %d not alive", st.pid)
	}
	if st.fields[3] == "" || st.fields[7] == "" {
		t.Errorf("running status lacks start time or running_cmd: %q", st.fields)
	}
	h.mustFail("command start service s1", "Service 's1' is already up")
	h.must("command stop service s1")
	h.waitState("s1", "stopped")
	waitFor(t, 5*time.Second, "process gone", func() bool { return !alive(st.pid) })
	h.mustFail("command stop service s1", "Service 's1' is already down")
	if !strings.Contains(h.logText(), "gracefully killed") {
		t.Errorf("log lacks the stop: %s", h.logText())
	}
}

func TestNoCommand(t *testing.T) {
	h := newHarness(t)
	h.must("service s1 desc=nothing to run")
	h.mustFail("command start service s1", "Service 's1' has no known command")
	h.mustFail("command start service nope", "Couldn't find a valid service. bailing.")
}

func TestExitZeroIsStopped(t *testing.T) {
	h := newHarness(t)
	count := filepath.Join(h.dir, "count")
	h.declare("s1", helperCmd("count", count, "0", "0s"))
	h.must("command start service s1")
	h.waitState("s1", "stopped")
	time.Sleep(300 * time.Millisecond) // a respawn would have shown by now
	if n := len(readLines(count)); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
}

func TestRespawnOnStop(t *testing.T) {
	h := newHarness(t)
	count := filepath.Join(h.dir, "count")
	h.declare("s1", helperCmd("count", count, "0", "50ms"), "respawn_on_stop=1")
	h.must("command start service s1")
	waitFor(t, 10*time.Second, "three runs", func() bool { return len(readLines(count)) >= 3 })
	h.must("command down service s1")
	h.waitState("s1", "stopped")
}

func TestBackoffThenFatal(t *testing.T) {
	h := newHarness(t)
	count := filepath.Join(h.dir, "count")
	// A long startwait: under load the helper may take longer than a short
	// one to start and die, and would then count as running.
	h.declare("s1", helperCmd("count", count, "3", "0s"), "respawn_max_retries=3", "startwait_secs=10")
	h.must("command start service s1")
	var sawBackoff bool
	waitFor(t, 20*time.Second, "fatal", func() bool {
		st := h.status("s1")
		sawBackoff = sawBackoff || st.state == "backoff"
		return st.state == "fatal"
	})
	st := h.status("s1")
	if st.pid != 0 {
		t.Errorf("fatal service has pid %d", st.pid)
	}
	if st.reason != "Exited with error 3" {
		t.Errorf("fail_reason %q", st.reason)
	}
	if n := len(readLines(count)); n != 3 {
		t.Errorf("command ran %d times, want respawn_max_retries=3", n)
	}
	if !sawBackoff {
		t.Errorf("never saw the backoff state")
	}
}

func TestStopCancelsBackoff(t *testing.T) {
	h := newHarness(t)
	count := filepath.Join(h.dir, "count")
	h.declare("s1", helperCmd("count", count, "3", "0s"), "respawn_max_retries=100", "startwait_secs=10")
	h.must("command start service s1")
	h.waitState("s1", "backoff")
	h.must("command stop service s1")
	if st := h.status("s1"); st.state != "stopped" {
		t.Fatalf("after stop in backoff: %s", st.state)
	}
	n := len(readLines(count))
	time.Sleep(700 * time.Millisecond) // longer than the first retry delays
	if m := len(readLines(count)); m != n {
		t.Fatalf("ran again after stop: %d -> %d", n, m)
	}
}

func TestKill9Respawns(t *testing.T) {
	h := newHarness(t)
	h.declare("s1", helperCmd("sleep"))
	h.must("command start service s1")
	st := h.waitState("s1", "running")
	syscall.Kill(st.pid, syscall.SIGKILL)
	var st2 status
	waitFor(t, 5*time.Second, "a new pid", func() bool {
		st2 = h.status("s1")
		return st2.pid != 0 && st2.pid != st.pid
	})
	h.waitState("s1", "running")
	if !strings.Contains(h.logText(), "Received signal 9") {
		t.Errorf("log lacks the kill")
	}
}

func TestRespawnOnFailOff(t *testing.T) {
	h := newHarness(t)
	h.declare("s1", helperCmd("sleep"), "respawn_on_fail=0")
	h.must("command start service s1")
	st := h.waitState("s1", "running")
	syscall.Kill(st.pid, syscall.SIGKILL)
	st = h.waitState("s1", "fail")
	if st.pid != 0 || st.reason != "Received signal 9" {
		t.Fatalf("after kill: %+v", st)
	}
}

func TestIgnoringTermIsKilledAfterStopwait(t *testing.T) {
	h := newHarness(t)
	ready := filepath.Join(h.dir, "ready")
	h.declare("s1", helperCmd("ignoreterm", ready), "stopwait_secs=0.3")
	h.must("command start service s1")
	st := h.waitState("s1", "running")
	waitFor(t, 5*time.Second, "TERM ignored", func() bool { return len(readLines(ready)) > 0 })
	h.must("command stop service s1")
	if s := h.status("s1"); s.state != "stopping" {
		t.Fatalf("just after stop: %s", s.state)
	}
	st2 := h.waitState("s1", "fail")
	if st2.reason != "Received signal 9" {
		t.Errorf("fail_reason %q", st2.reason)
	}
	if alive(st.pid) {
		t.Errorf("still alive")
	}
	if !strings.Contains(h.logText(), "still running after") {
		t.Errorf("log lacks the kill after stopwait")
	}
}

func TestEnvReachesChild(t *testing.T) {
	h := newHarness(t)
	envFile := filepath.Join(h.dir, "env")
	h.declare("s1", helperCmd("env", envFile), "add_env=FOO=bar baz", "add_env=EMPTY=")
	h.must("command start service s1")
	waitFor(t, 5*time.Second, "env file", func() bool { _, err := os.Stat(envFile); return err == nil })
	b, _ := os.ReadFile(envFile)
	env := "\n" + string(b) + "\n"
	for _, want := range []string{"FOO=bar baz", "EMPTY=", "CONTROL_FREAK_ENABLED=1", "CONTROL_FREAK_SERVICE=s1", "CFKD_HOME=" + h.dir} {
		if !strings.Contains(env, "\n"+want+"\n") {
			t.Errorf("child env lacks %q", want)
		}
	}
}

func TestTagsAndSelectors(t *testing.T) {
	h := newHarness(t)
	h.declare("web1", helperCmd("sleep"), "tags=web,prod")
	h.declare("web2", helperCmd("sleep"), "tags= web ")
	h.declare("web3", helperCmd("sleep"), "tags=web,stage")
	h.declare("db", helperCmd("sleep"))
	if out := h.must("command start tag web"); out[0] != "done 3" {
		t.Fatalf("start tag web: %q", out)
	}
	out := h.must("command status tag prod")
	if len(out) != 1 || !strings.HasPrefix(out[0], "web1\t") {
		t.Fatalf("status tag prod: %q", out)
	}
	if st := h.status("db"); st.state != "stopped" {
		t.Fatalf("db was started: %s", st.state)
	}
	if out := h.must("command up all"); out[0] != "done 1" {
		t.Fatalf("up all with three up: %q", out)
	}
	if out := h.must("command up all"); out[0] != "done 0" {
		t.Fatalf("up all again: %q", out)
	}
	h.mustFail("command start tag nope", "Couldn't find a valid service. bailing.")
	h.mustFail("command start bogus x", "unknown selector 'bogus'")
	h.mustFail("command start service a b", "service selector takes exactly 1 argument: name")
	desc := h.must("command desc service web1")
	if !strings.HasPrefix(desc[0], "web1\tprod, web\t") {
		t.Errorf("desc: %q", desc)
	}
	// Partly refused: the acted-on ones count, one final line.
	h.must("command stop service web1")
	h.waitState("web1", "stopped")
	if out := h.must("command stop tag web"); out[0] != "done 2" {
		t.Fatalf("stop tag web with one down: %q", out)
	}
	h.waitState("web2", "stopped")
	h.waitState("web3", "stopped")
	if out := h.must("command down all"); out[0] != "done 1" {
		t.Fatalf("down all: %q", out)
	}
}

func TestDestroy(t *testing.T) {
	h := newHarness(t)
	h.declare("s1", helperCmd("sleep"))
	h.declare("s2", helperCmd("sleep"))
	h.must("command start all")
	st := h.waitState("s1", "running")
	h.must("command destroy service s1")
	if out := h.must("command list"); len(out) != 1 || out[0] != "s2" {
		t.Fatalf("list after destroy: %q", out)
	}
	if alive(st.pid) {
		t.Fatalf("destroyed service's process alive")
	}
}

func TestRestartGivesNewProcess(t *testing.T) {
	h := newHarness(t)
	h.declare("s1", helperCmd("sleep"))
	h.must("command start service s1")
	st := h.waitState("s1", "running")
	if out := h.must("command restart service s1"); out[0] != "done 1" {
		t.Fatalf("restart: %q", out)
	}
	st2 := h.waitState("s1", "running")
	if st2.pid == st.pid || alive(st.pid) {
		t.Fatalf("restart kept pid %d", st.pid)
	}
}

func TestOutputIsLogged(t *testing.T) {
	h := newHarness(t)
	h.declare("talky", helperCmd("print", "50"))
	h.declare("quiet", helperCmd("print", "5"), "ignore_stdout=1", "ignore_stderr=yes")
	h.must("command start all")
	st := h.waitState("talky", "running")
	waitFor(t, 5*time.Second, "output logged", func() bool {
		return strings.Contains(h.logText(), "err line 49")
	})
	text := h.logText()
	want := strconv.Itoa(st.pid) + " INFO service.talky.out - out line 49"
	if !strings.Contains(text, want) {
		t.Errorf("log lacks %q", want)
	}
	if !strings.Contains(text, strconv.Itoa(st.pid)+" ERROR service.talky.err - err line 0") {
		t.Errorf("stderr not logged as ERROR")
	}
	if strings.Contains(text, "service.quiet") {
		t.Errorf("ignored output was logged")
	}
}

func TestLongLinesAreSplit(t *testing.T) {
	h := newHarness(t)
	h.declare("long", helperCmd("longline", strconv.Itoa(3*maxLineBytes+10)))
	h.must("command start all")
	waitFor(t, 5*time.Second, "tail logged", func() bool {
		return strings.Contains(h.logText(), "service.long.out - tail")
	})
	pieces := 0
	for _, l := range strings.Split(h.logText(), "\n") {
		if i := strings.Index(l, "service.long.out - x"); i >= 0 {
			pieces++
			if n := len(l) - i - len("service.long.out - "); n > maxLineBytes {
				t.Errorf("a logged piece has %d bytes", n)
			}
		}
	}
	if pieces != 4 {
		t.Errorf("long line logged in %d pieces, want 4", pieces)
	}
}

func TestOrphansAreReapedAndStopKillsTheGroup(t *testing.T) {
	h := newHarness(t)
	pids := filepath.Join(h.dir, "pids")
	// A service whose child outlives it: the grandchild must be reaped by
	// us (subreaper), never left a zombie.
	h.declare("leaver", helperCmd("grandchild", pids, "exit", "exit"), "respawn_on_fail=0")
	h.must("command start service leaver")
	waitFor(t, 5*time.Second, "grandchild pid", func() bool { return len(readLines(pids)) == 1 })
	gc, _ := strconv.Atoi(readLines(pids)[0])
	waitFor(t, 5*time.Second, "grandchild reaped", func() bool {
		_, err := os.Stat("/proc/" + strconv.Itoa(gc))
		return os.IsNotExist(err)
	})

	// Stopping a service takes its whole process group down.
	pids2 := filepath.Join(h.dir, "pids2")
	h.declare("family", helperCmd("grandchild", pids2, "sleep"))
	h.must("command start service family")
	st := h.waitState("family", "running")
	waitFor(t, 5*time.Second, "grandchild pid", func() bool { return len(readLines(pids2)) == 1 })
	gc2, _ := strconv.Atoi(readLines(pids2)[0])
	h.must("command stop service family")
	h.waitState("family", "stopped")
	waitFor(t, 5*time.Second, "whole group gone", func() bool { return !alive(st.pid) && !alive(gc2) })
}

func TestShutdownLeavesNoProcess(t *testing.T) {
	h := newHarness(t)
	ready := filepath.Join(h.dir, "ready")
	pids := filepath.Join(h.dir, "pids")
	h.declare("a", helperCmd("sleep"))
	h.declare("b", helperCmd("ignoreterm", ready), "stopwait_secs=0.2")
	h.declare("c", helperCmd("grandchild", pids, "ignoreterm"), "stopwait_secs=0.2")
	h.must("command start all")
	var all []int
	for _, n := range []string{"a", "b", "c"} {
		all = append(all, h.waitState(n, "running").pid)
	}
	waitFor(t, 5*time.Second, "grandchild", func() bool { return len(readLines(pids)) == 1 })
	gc, _ := strconv.Atoi(readLines(pids)[0])
	all = append(all, gc)
	h.must("command shutdown")
	select {
	case <-h.s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not finish")
	}
	for _, pid := range all {
		if alive(pid) {
			t.Errorf("pid %d survived shutdown", pid)
		}
	}
}

func TestAttributes(t *testing.T) {
	h := newHarness(t)
	h.mustFail("service s1 bogus=1", "invalid property 'bogus'")
	if out := h.must("command list"); len(out) != 0 {
		t.Fatalf("a refused line created a service: %q", out)
	}
	for _, c := range []struct{ line, err string }{
		{"service s1 startwait_secs=0", ""},
		{"service s1 startwait_secs=1.5", ""},
		{"service s1 startwait_secs=-1", "invalid value"},
		{"service s1 startwait_secs=abc", "invalid value"},
		{"service s1 stopwait_secs=0", ""},
		{"service s1 respawn_max_retries=0", "invalid value"},
		{"service s1 respawn_max_retries=5", ""},
		{"service s1 respawn_on_fail=none", "invalid value"},
		{"service s1 respawn_on_fail=Disabled", ""},
		{"service s1 ignore_stdout=ON", ""},
		{"service s1 no_new_session=maybe", "invalid value"},
		{`service s1 cmd=["a", 1]`, "invalid value"},
		{`service s1 cmd=[]`, "invalid value"},
		{`service s1 cmd=["/bin/true"]`, ""},
		{"service s1 add_env=NOEQUALS", "invalid value"},
		{"service s1 tie_stdin_to=bad name", "invalid value"},
		{"service 1s cmd=x", "service name is invalid"},
	} {
		_, err := h.do(c.line)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.err {
			t.Errorf("%q: error %q, want %q", c.line, got, c.err)
		}
	}
	desc := h.must("command desc service s1")
	if !strings.HasSuffix(desc[0], "\t"+`["/bin/true"]`+"\t") {
		t.Errorf("desc shows cmd as %q", desc)
	}
	h.must("service s1 cmd=")
	h.mustFail("command start service s1", "Service 's1' has no known command")
}

func TestArgvRule(t *testing.T) {
	for _, c := range []struct {
		cmd  string
		want []string
	}{
		{"sleep 100", []string{"sleep", "100"}},
		{"  /bin/echo   a  b ", []string{"/bin/echo", "a", "b"}},
		{"echo $HOME", []string{"/bin/sh", "-c", "echo $HOME"}},
		{"a | b", []string{"/bin/sh", "-c", "a | b"}},
		{"echo 'x'", []string{"/bin/sh", "-c", "echo 'x'"}},
		{"FOO=1 prog", []string{"/bin/sh", "-c", "FOO=1 prog"}},
		{"exec prog", []string{"/bin/sh", "-c", "exec prog"}},
		{". ./env", []string{"/bin/sh", "-c", ". ./env"}},
		{"prog ~/x", []string{"/bin/sh", "-c", "prog ~/x"}},
		{"prog a=b", []string{"prog", "a=b"}},
	} {
		cfg := Config{Cmd: c.cmd}
		if got := cfg.Argv(); strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%q: argv %q, want %q", c.cmd, got, c.want)
		}
	}
}

func TestShellCommandAndMissingBinary(t *testing.T) {
	h := newHarness(t)
	h.declare("sh", "echo dying; exit 7", "respawn_on_fail=0")
	h.must("command start service sh")
	// Dies while starting with respawn off: fail.
	st := h.waitState("sh", "fail")
	if st.reason != "Exited with error 7" {
		t.Errorf("shell exit reason %q", st.reason)
	}
	h.declare("missing", "/nonexistent/prog arg", "respawn_max_retries=1")
	h.must("command start service missing")
	st = h.waitState("missing", "fatal")
	if !strings.Contains(st.reason, "/nonexistent/prog") {
		t.Errorf("missing binary reason %q", st.reason)
	}
}
