// Package pythonproxy_test runs cfk_proxy.py, the Python proxy, under a
// fake cfkd: three pipes and listening sockets passed as cfkd passes them,
// JSON commands in, statuses and log lines out (proxies/PROTOCOL.md).
package pythonproxy_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
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

// proxyCase is one behaviour, run against each interpreter.
type proxyCase struct {
	name string
	run  func(t *testing.T, python string)
}

func TestProxy(t *testing.T) {
	cases := []proxyCase{
		{"PreloadedCallable", testPreloadedCallable},
		{"PyFile", testPyFile},
		{"Output", testOutput},
		{"IgnoredOutput", testIgnoredOutput},
		{"Env", testEnv},
		{"Stop", testStop},
		{"StopWithoutNewSession", testStopWithoutNewSession},
		{"StopNewestOfName", testStopNewestOfName},
		{"ExitCode", testExitCode},
		{"Exception", testException},
		{"ExecFallback", testExecFallback},
		{"CannotStart", testCannotStart},
		{"TieStdin", testTieStdin},
		{"ListenFds", testListenFds},
		{"ListenFdsOverlap", testListenFdsOverlap},
		{"OnlyItsFds", testOnlyItsFds},
		{"GcFrozen", testGcFrozen},
		{"BadCommands", testBadCommands},
		{"TermStopsWorkers", testTermStopsWorkers},
		{"EOFStopsWorkers", testEOFStopsWorkers},
		{"KillAfterStopWait", testKillAfterStopWait},
		{"LogsDroppedNotStatuses", testLogsDroppedNotStatuses},
		{"Unbuffered", testUnbuffered},
	}
	eachPython(t, func(t *testing.T, py string) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				c.run(t, py)
			})
		}
	})
}

// eachPython runs test as a parallel subtest for each interpreter.
func eachPython(t *testing.T, test func(t *testing.T, python string)) {
	t.Helper()
	for _, py := range pythons(t) {
		t.Run(strings.ReplaceAll(strings.TrimPrefix(py, "/"), "/", "_"), func(t *testing.T) {
			t.Parallel()
			test(t, py)
		})
	}
}

// A module:function runs in the forked child of the proxy that imported
// the module: the module's import-time pid is the proxy's.
func testPreloadedCallable(t *testing.T, py string) {
	h := startProxy(t, options{python: py})
	h.WaitLog("out:-:preloaded cfktestapp in ")
	pid := h.StartService("w1", "cfktestapp:hello", nil)
	if ws := h.Stopped("w1", pid); ws != 0 {
		t.Errorf("exit_status %d, want 0", ws)
	}
	line := h.WaitLog("out:w1:")
	want := fmt.Sprintf("out:w1:loaded-by %d pid %d ppid %d argv cfktestapp:hello", h.Pid(), pid, h.Pid())
	if line != want {
		t.Errorf("got %q\nwant %q", line, want)
	}
}

// A .py cmd runs with runpy in the preloaded interpreter, with its argv.
func testPyFile(t *testing.T, py string) {
	h := startProxy(t, options{python: py})
	script := filepath.Join(testdataDir, "script.py")
	pid := h.StartService("s", script+" 5 x", nil)
	if ws := h.Stopped("s", pid); ws != 5<<8 {
		t.Errorf("exit_status %d, want %d", ws, 5<<8)
	}
	line := h.WaitLog("out:s:")
	want := fmt.Sprintf("out:s:script __main__ 5 x loaded-by %d pid %d path0 %s", h.Pid(), pid, testdataDir)
	if line != want {
		t.Errorf("got %q\nwant %q", line, want)
	}
	pid = h.StartService("s2", []string{script}, nil)
	if ws := h.Stopped("s2", pid); ws != 0 {
		t.Errorf("list cmd: exit_status %d, want 0", ws)
	}
}

// stdout and stderr become log lines: \r\n trimmed, empty lines kept, a
// long line in pieces that fit cfkd's 16 KiB lines, the last partial line
// logged at exit.
func testOutput(t *testing.T, py string) {
	h := startProxy(t, options{python: py})
	pid := h.StartService("w", "cfktestapp:output", nil)
	h.Stopped("w", pid)
	h.WaitLog("err:w:oops")
	// stdout and stderr are separate pipes: stdout's last line may come
	// after stderr's.
	h.WaitLog("out:w:partial")
	out := h.Lines("out", "w")
	if len(out) < 4 || out[0] != "one" || out[1] != "two" || out[2] != "" || out[len(out)-1] != "partial" {
		t.Fatalf("stdout lines %.60q", out)
	}
	xs := 0
	for _, l := range out[3 : len(out)-1] {
		if len("out:w:")+len(l)+1 > 16<<10 {
			t.Errorf("a log line of %d bytes is longer than 16 KiB", len(l))
		}
		if strings.Trim(l, "x") != "" {
			t.Errorf("unexpected line %.40q", l)
		}
		xs += len(l)
	}
	if xs != 40000 || len(out) != 3+3+1 {
		t.Errorf("long line: %d bytes in %d pieces, want 40000 in 3", xs, len(out)-4)
	}
}

func testIgnoredOutput(t *testing.T, py string) {
	h := startProxy(t, options{python: py})
	pid := h.StartService("q", "cfktestapp:output", map[string]any{"ignore_stdout": 1, "ignore_stderr": true})
	h.Stopped("q", pid)
	pid = h.StartService("marker", "cfktestapp:hello", map[string]any{"ignore_stdout": "", "ignore_stderr": nil})
	h.Stopped("marker", pid)
	h.WaitLog("out:marker:")
	if l := append(h.Lines("out", "q"), h.Lines("err", "q")...); len(l) > 0 {
		t.Errorf("ignored output was logged: %q", l)
	}
}

// The service's env, CONTROL_FREAK_*, no _CFK_* and no LISTEN_*.
func testEnv(t *testing.T, py string) {
	h := startProxy(t, options{python: py, sockets: []string{"web"}})
	pid := h.StartService("envy", "cfktestapp:env", map[string]any{"env": map[string]string{"FOO": "bar baz"}})
	h.Stopped("envy", pid)
	h.WaitLog("out:envy:LISTEN_PID=")
	got := strings.Join(h.Lines("out", "envy"), "\n")
	want := strings.Join([]string{"FOO=bar baz", "CONTROL_FREAK_ENABLED=1", "CONTROL_FREAK_SERVICE=envy",
		"_CFK_COMMAND_FD=<unset>", "_CFK_SOCK_web=<unset>", "LISTEN_FDS=<unset>", "LISTEN_PID=<unset>"}, "\n")
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// stop TERMs the worker's process group: exit_status 15. The worker is the
// proxy's child, leads its own session, and is named in comm.
func testStop(t *testing.T, py string) {
	h := startProxy(t, options{python: py})
	pid := h.StartService("sleeper", "cfktestapp:sleep", nil)
	h.WaitLog("out:sleeper:ready")
	st := proctest.ReadStat(t, pid)
	if st.Parent != h.Pid() || st.Group != pid || st.Session != pid {
		t.Errorf("ppid %d pgrp %d session %d; want %d %d %d", st.Parent, st.Group, st.Session, h.Pid(), pid, pid)
	}
	if got := proctest.Comm(pid); got != "[cfk sleeper] c" {
		t.Errorf("comm %q, want %q", got, "[cfk sleeper] c")
	}
	h.Stop("sleeper")
	if ws := h.Stopped("sleeper", pid); ws != int(syscall.SIGTERM) {
		t.Errorf("exit_status %d, want 15", ws)
	}
}

// Under no_new_session the worker stays in the proxy's group and stop
// signals the worker alone.
func testStopWithoutNewSession(t *testing.T, py string) {
	h := startProxy(t, options{python: py})
	pid := h.StartService("same", "cfktestapp:sleep", map[string]any{"no_new_session": true})
	h.WaitLog("out:same:ready")
	if proctest.ReadStat(t, pid).Group == pid {
		t.Errorf("worker leads its own group under no_new_session")
	}
	h.Stop("same")
	if ws := h.Stopped("same", pid); ws != int(syscall.SIGTERM) {
		t.Errorf("exit_status %d, want 15", ws)
	}
	select {
	case <-h.Done():
		t.Fatal("the proxy died with its worker")
	case <-time.After(50 * time.Millisecond):
	}
}

// Two workers of one name (a start cfkd gave up on that reported late):
// stop TERMs the newest only, as the original proxy did.
func testStopNewestOfName(t *testing.T, py string) {
	h := startProxy(t, options{python: py})
	h.Send(map[string]any{"command": "start", "name": "dup", "cmd": "cfktestapp:sleep"})
	h.Send(map[string]any{"command": "start", "name": "dup", "cmd": "cfktestapp:sleep"})
	var older, newer int
	cfkdtest.WaitFor(t, waitLong, "two started", func() bool {
		var pids []int
		for _, st := range h.Statuses() {
			if st.Status == "started" {
				pids = append(pids, st.Pid)
			}
		}
		if len(pids) == 2 {
			older, newer = pids[0], pids[1]
			return true
		}
		return false
	})
	h.Stop("dup")
	if ws := h.Stopped("dup", newer); ws != int(syscall.SIGTERM) {
		t.Errorf("newest: exit_status %d, want 15", ws)
	}
	if syscall.Kill(older, 0) != nil {
		t.Fatalf("the older worker %d was stopped too", older)
	}
	h.Stop("dup")
	if ws := h.Stopped("dup", older); ws != int(syscall.SIGTERM) {
		t.Errorf("older: exit_status %d, want 15", ws)
	}
}

func testExitCode(t *testing.T, py string) {
	h := startProxy(t, options{python: py})
	pid := h.StartService("three", "cfktestapp:exit3", nil)
	if ws := h.Stopped("three", pid); ws != 768 {
		t.Errorf("exit_status %d, want 768", ws)
	}
	pid = h.StartService("reason", "cfktestapp:bad_exit", nil)
	if ws := h.Stopped("reason", pid); ws != 256 {
		t.Errorf("sys.exit(str): exit_status %d, want 256", ws)
	}
	h.WaitLog("err:reason:a reason, not a number")
}

func testException(t *testing.T, py string) {
	h := startProxy(t, options{python: py})
	pid := h.StartService("boom", "cfktestapp:boom", nil)
	if ws := h.Stopped("boom", pid); ws != 256 {
		t.Errorf("exit_status %d, want 256", ws)
	}
	h.WaitLog("err:boom:Traceback (most recent call last):")
	h.WaitLog("err:boom:ValueError: boom")
	pid = h.StartService("missing", "cfktestapp:no_such_function", nil)
	if ws := h.Stopped("missing", pid); ws != 256 {
		t.Errorf("missing function: exit_status %d, want 256", ws)
	}
	h.WaitLog("err:missing:AttributeError:")
}

// Anything that is neither module:function nor .py is exec'd.
func testExecFallback(t *testing.T, py string) {
	h := startProxy(t, options{python: py})
	pid := h.StartService("sh", []string{"sh", "-c", "echo I am $CONTROL_FREAK_SERVICE; exit 4"}, nil)
	if ws := h.Stopped("sh", pid); ws != 4<<8 {
		t.Errorf("exit_status %d, want %d", ws, 4<<8)
	}
	h.WaitLog("out:sh:I am sh")
	pid = h.StartService("shell", "echo hi; exit 2", nil) // metacharacters: /bin/sh -c
	if ws := h.Stopped("shell", pid); ws != 2<<8 {
		t.Errorf("exit_status %d, want %d", ws, 2<<8)
	}
	h.WaitLog("out:shell:hi")
	pid = h.StartService("nope", "/no/such/program arg", nil)
	if ws := h.Stopped("nope", pid); ws != 127<<8 {
		t.Errorf("exit_status %d, want %d", ws, 127<<8)
	}
	h.WaitLog("err:nope:cfk_proxy: cannot run /no/such/program: No such file or directory")
}

// A start that cannot be carried out is a worker that exits 127, with the
// reason logged by the proxy even when the worker's stderr is ignored.
func testCannotStart(t *testing.T, py string) {
	h := startProxy(t, options{python: py})
	pid := h.StartService("lost", "cfktestapp:sleep", map[string]any{"tie_stdin_to": "nosuch", "ignore_stderr": 1})
	if ws := h.Stopped("lost", pid); ws != 127<<8 {
		t.Errorf("exit_status %d, want %d", ws, 127<<8)
	}
	h.WaitLog("err:lost:cannot start: unknown socket 'nosuch' (is it bound?)")
	pid = h.StartService("badcmd", 42, nil)
	if ws := h.Stopped("badcmd", pid); ws != 127<<8 {
		t.Errorf("exit_status %d, want %d", ws, 127<<8)
	}
	h.WaitLog("err:badcmd:cannot start: cmd must be a string or a list of strings")
}

// tie_stdin_to: fd 0 is the listening socket; the worker accepts on it.
func testTieStdin(t *testing.T, py string) {
	h := startProxy(t, options{python: py, sockets: []string{"fcgi"}})
	fcgi := h.Socket("fcgi")
	pid := h.StartService("tied", "cfktestapp:stdin_echo", map[string]any{"tie_stdin_to": "fcgi"})
	h.WaitLog("out:tied:ready")
	if got, want := proctest.Fds(t, pid)[0], proctest.Target(t, fcgi.File); got != want {
		t.Errorf("fd 0 is %s, want %s", got, want)
	}
	if got := cfkdtest.ReadLine(t, fcgi.Addr); got != fmt.Sprintf("hello from %d", pid) {
		t.Errorf("answer %q", got)
	}
	if ws := h.Stopped("tied", pid); ws != 0 {
		t.Errorf("exit_status %d", ws)
	}
}

// sockets: systemd style, fd 3 and LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID.
func testListenFds(t *testing.T, py string) {
	h := startProxy(t, options{python: py, sockets: []string{"other", "web"}})
	web := h.Socket("web")
	pid := h.StartService("srv", "cfktestapp:listen_fds", map[string]any{"sockets": []string{"web"}})
	line := h.WaitLog("out:srv:LISTEN")
	if want := fmt.Sprintf("out:srv:LISTEN 1 web %d %d", pid, pid); line != want {
		t.Errorf("got %q, want %q", line, want)
	}
	fds := proctest.Fds(t, pid)
	if got, want := fds[3], proctest.Target(t, web.File); got != want {
		t.Errorf("fd 3 is %s, want %s (web)", got, want)
	}
	if len(fds) != 4 {
		t.Errorf("worker fds %v, want 0-3", fds)
	}
	if got := cfkdtest.ReadLine(t, web.Addr); got != fmt.Sprintf("fd3 %d", pid) {
		t.Errorf("answer %q", got)
	}
	h.Stopped("srv", pid)
}

// Sockets asked in the reverse order of their fds in the proxy must swap
// places without one overwriting the other.
func testListenFdsOverlap(t *testing.T, py string) {
	h := startProxy(t, options{python: py, sockets: []string{"a", "b", "c"}})
	a, b, c := h.Socket("a"), h.Socket("b"), h.Socket("c")
	// In the proxy a, b, c are fds 6, 7, 8; ask for c, b, a, then 3, 4, 5.
	pid := h.StartService("swap", "cfktestapp:sleep", map[string]any{"sockets": []string{"c", "b", "a"}})
	h.WaitLog("out:swap:ready")
	fds := proctest.Fds(t, pid)
	for fd, s := range map[int]*fakecfkd.Socket{3: c, 4: b, 5: a} {
		if got, want := fds[fd], proctest.Target(t, s.File); got != want {
			t.Errorf("fd %d is %s, want %s (%s)", fd, got, want, s.Name)
		}
	}
	if len(fds) != 6 {
		t.Errorf("worker fds %v, want 0-5", fds)
	}
}

// A worker has 0, 1, 2 and nothing else of the proxy's.
func testOnlyItsFds(t *testing.T, py string) {
	h := startProxy(t, options{python: py, sockets: []string{"web"}})
	// Another worker first, so that the proxy holds its pipes too.
	h.StartService("first", "cfktestapp:sleep", nil)
	h.WaitLog("out:first:ready")
	pid := h.StartService("bare", "cfktestapp:sleep", map[string]any{"ignore_stdout": 1})
	// Its "ready" goes to /dev/null: wait for the fds to settle instead.
	waitForFds := func() map[int]string {
		deadline := time.Now().Add(waitLong)
		for {
			fds := proctest.Fds(t, pid)
			if len(fds) == 3 || time.Now().After(deadline) {
				return fds
			}
			time.Sleep(pollEvery)
		}
	}
	fds := waitForFds()
	if len(fds) != 3 || fds[0] != "/dev/null" || fds[1] != "/dev/null" || !strings.HasPrefix(fds[2], "pipe:") {
		t.Errorf("worker fds %v, want 0 and 1 /dev/null, 2 a pipe, nothing else", fds)
	}
}

// gc.freeze ran before the fork, and the collector is on in the worker.
func testGcFrozen(t *testing.T, py string) {
	h := startProxy(t, options{python: py})
	pid := h.StartService("gc", "cfktestapp:frozen", nil)
	h.Stopped("gc", pid)
	line := h.WaitLog("out:gc:frozen ")
	f := strings.Fields(line)
	if n, _ := strconv.Atoi(f[1]); n <= 0 || f[3] != "True" {
		t.Errorf("got %q: want a freeze count > 0 and the collector enabled", line)
	}
}

// Bad input is an err:-: line and changes nothing.
func testBadCommands(t *testing.T, py string) {
	h := startProxy(t, options{python: py})
	h.SendLine(`{"command":"start","name":`)
	h.WaitLog(`err:-:malformed command '{"command":"start","name":'`)
	h.SendLine(`[1,2]`)
	h.WaitLog(`err:-:malformed command '[1,2]'`)
	h.SendLine(`{"command":"dance"}`)
	h.WaitLog(`err:-:unknown command 'dance'`)
	h.SendLine(`{"command":"stop","name":"ghost"}`)
	h.WaitLog(`err:-:stop: unknown service 'ghost'`)
	h.SendLine(`{"command":"start","name":"a:b","cmd":"x"}`)
	h.WaitLog(`err:-:start: invalid service name 'a:b'`)
	h.SendLine("\xff\xfe")
	h.WaitLog(`err:-:malformed command '`)
	h.SendLine("")
	pid := h.StartService("after", "cfktestapp:exit3", nil)
	if ws := h.Stopped("after", pid); ws != 768 {
		t.Errorf("exit_status %d", ws)
	}
}

// TERM, INT or HUP to the proxy: every worker is TERMed and reported,
// then exit 0.
func testTermStopsWorkers(t *testing.T, py string) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			t.Parallel()
			h := startProxy(t, options{python: py})
			a := h.StartService("a", "cfktestapp:sleep", nil)
			b := h.StartService("b", "cfktestapp:sleep", map[string]any{"no_new_session": 1})
			h.WaitLog("out:a:ready")
			h.WaitLog("out:b:ready")
			h.Signal(sig)
			if code := h.WaitExit(); code != 0 {
				t.Errorf("proxy exit code %d", code)
			}
			for name, pid := range map[string]int{"a": a, "b": b} {
				if ws := h.Stopped(name, pid); ws != int(syscall.SIGTERM) {
					t.Errorf("%s: exit_status %d, want 15", name, ws)
				}
				if syscall.Kill(pid, 0) == nil {
					t.Errorf("worker %d still alive", pid)
				}
			}
			h.WaitLog(fmt.Sprintf("out:-:stopping (got %s): 2 worker(s) to stop", unix.SignalName(sig)))
		})
	}
}

// EOF on the command pipe (cfkd is gone) does the same.
func testEOFStopsWorkers(t *testing.T, py string) {
	h := startProxy(t, options{python: py})
	a := h.StartService("a", "cfktestapp:sleep", nil)
	h.WaitLog("out:a:ready")
	h.CloseCommands()
	if code := h.WaitExit(); code != 0 {
		t.Errorf("proxy exit code %d", code)
	}
	if ws := h.Stopped("a", a); ws != int(syscall.SIGTERM) {
		t.Errorf("exit_status %d, want 15", ws)
	}
}

// A worker that ignores TERM is KILLed after --stop-wait.
func testKillAfterStopWait(t *testing.T, py string) {
	h := startProxy(t, options{python: py, args: []string{"--stop-wait", "0.3"}})
	pid := h.StartService("mule", "cfktestapp:stubborn", nil)
	h.WaitLog("out:mule:ready")
	h.CloseCommands()
	if code := h.WaitExit(); code != 0 {
		t.Errorf("proxy exit code %d", code)
	}
	if ws := h.Stopped("mule", pid); ws != int(syscall.SIGKILL) {
		t.Errorf("exit_status %d, want 9", ws)
	}
	h.WaitLog("err:-:1 worker(s) still up after 0.3 s: KILL")
}

// When cfkd does not read the log pipe, log lines are dropped and counted,
// and statuses still get through.
func testLogsDroppedNotStatuses(t *testing.T, py string) {
	h := startProxy(t, options{python: py, holdLogs: true})
	pid := h.StartService("noisy", "cfktestapp:noisy", nil) // 3 MB of output, 1 MiB of buffer
	if ws := h.Stopped("noisy", pid); ws != 0 {
		t.Errorf("exit_status %d", ws)
	}
	pid = h.StartService("next", "cfktestapp:exit3", nil)
	h.Stopped("next", pid)
	h.ReadLogs()
	line := h.WaitLog("err:-:")
	if !strings.HasSuffix(line, " log lines dropped: cfkd was not reading them") {
		t.Errorf("got %q", line)
	}
	if n := len(h.Lines("out", "noisy")); n == 0 || n >= 30000 {
		t.Errorf("%d lines of 30000 logged", n)
	}
}

// PYTHONUNBUFFERED in the service's env takes effect in the worker.
func testUnbuffered(t *testing.T, py string) {
	h := startProxy(t, options{python: py})
	pid := h.StartService("u", "cfktestapp:unbuffered", map[string]any{"env": map[string]string{"PYTHONUNBUFFERED": "1"}})
	h.WaitLog("out:u:no flush needed")
	h.WaitLog("out:u:ready") // printed after the write to stderr
	h.Stop("u")
	h.Stopped("u", pid)
	// A partial line on stderr, logged once the worker is gone: had it been
	// buffered, TERM would have lost it.
	h.WaitLog("err:u:nor here")

	// Without it, stdout is block-buffered as in any python3 on a pipe, and
	// flushed when the worker returns.
	pid = h.StartService("b", "cfktestapp:hello", nil)
	h.Stopped("b", pid)
	h.WaitLog("out:b:loaded-by")
}

// The Python unit tests (test_cfk_proxy.py) run with the Go tests.
func TestPythonUnit(t *testing.T) {
	for _, py := range pythons(t) {
		cmd := exec.Command(py, "-m", "unittest", "-v", "test_cfk_proxy")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s -m unittest: %v\n%s", py, err, out)
		}
	}
}
