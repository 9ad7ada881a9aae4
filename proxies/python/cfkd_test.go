package pythonproxy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/controlfreak-go/cfk/internal/cfkdtest"
)

// cfkd is the real cfkd under test, run by internal/cfkdtest.
type cfkd struct{ *cfkdtest.Daemon }

// startCfkd runs cfkd in the foreground on a fresh home with a config.
func startCfkd(t *testing.T, config string) *cfkd {
	t.Helper()
	return &cfkd{cfkdtest.Start(t, config)}
}

// do sends one console line and returns the answer's lines before OK.
func (d *cfkd) do(line string) []string { d.T.Helper(); return d.Do(line) }

// status is one service's `command status` fields.
func (d *cfkd) status(name string) []string { d.T.Helper(); return d.Status(name) }

// waitUp waits for a service to be starting or running with a pid that is
// not old, and returns the pid. (startwait_secs is long in these tests, so
// that a slow machine does not fail the proxy's first start; nothing here
// needs the service to be past it.)
func (d *cfkd) waitUp(name string, old int) int {
	d.T.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		f := d.status(name)
		pid, _ := strconv.Atoi(f[2])
		if (f[1] == "starting" || f[1] == "running") && pid != 0 && pid != old {
			return pid
		}
		if time.Now().After(deadline) {
			d.T.Fatalf("%s is not up: %q", name, f)
		}
		time.Sleep(pollEvery)
	}
}

// waitState waits for a service to reach state and returns its pid.
func (d *cfkd) waitState(name, state string) int {
	d.T.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		f := d.status(name)
		if f[1] == state {
			pid, _ := strconv.Atoi(f[2])
			return pid
		}
		if time.Now().After(deadline) {
			d.T.Fatalf("%s is %s, not %s: %q", name, f[1], state, f)
		}
		time.Sleep(pollEvery)
	}
}

// proxyStatus returns a proxy's state and pid from proxystatus.
func (d *cfkd) proxyStatus(name string) (string, int) {
	d.T.Helper()
	for _, l := range d.do("command proxystatus") {
		f := strings.Split(l, "\t")
		if f[0] == name {
			pid := 0
			if len(f) > 2 {
				pid, _ = strconv.Atoi(f[2])
			}
			return f[1], pid
		}
	}
	d.T.Fatalf("no proxy %s in proxystatus", name)
	return "", 0
}

func (d *cfkd) waitLogged(text string) {
	d.T.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		b, _ := os.ReadFile(filepath.Join(d.Home, "cfkd.log"))
		if strings.Contains(string(b), text) {
			return
		}
		if time.Now().After(deadline) {
			d.T.Fatalf("cfkd.log never said %q", text)
		}
		time.Sleep(pollEvery)
	}
}

// startWaitSecs is the services' startwait_secs: cfkd counts the proxy's
// own start against it, and a loaded machine can take more than the
// default second to start python3.
const startWaitSecs = "5"

// proxyConfig declares socket web (with socketAttrs), proxy py running
// cfk_proxy.py with python, and its services: w1 (a sleeper), web1 and web2 (hello_http on
// socket web).
func proxyConfig(python string, socketAttrs ...string) string {
	argv, _ := json.Marshal([]string{python, proxyPath, "--preload", "cfktestapp,hello_http"})
	examples, _ := filepath.Abs("examples")
	lines := []string{"socket web host=127.0.0.1", "socket web service=0"}
	for _, a := range socketAttrs {
		lines = append(lines, "socket web "+a)
	}
	return strings.Join(append(lines,
		"command bind web",
		"proxy py cmd="+string(argv),
		"proxy py add_env=PYTHONPATH="+testdataDir+":"+examples,
		"proxy py service w1 cmd=cfktestapp:sleep",
		"proxy py service w1 startwait_secs="+startWaitSecs,
		"proxy py service web1 cmd=hello_http:main",
		"proxy py service web1 sockets=web",
		"proxy py service web1 startwait_secs="+startWaitSecs,
		"proxy py service web2 cmd=hello_http:main",
		"proxy py service web2 sockets=web",
		"proxy py service web2 startwait_secs="+startWaitSecs,
		""), "\n")
}

// The real cfkd runs a service through the Python proxy: status shows
// the proxy, pids both pids, the worker is the proxy's child and the proxy
// cfkd's; the worker's output reaches cfkd's log; stop works; the auto
// proxy goes when its last service does.
func TestCfkdRunsPythonProxy(t *testing.T) {
	eachPython(t, testCfkdRunsPythonProxy)
}

func testCfkdRunsPythonProxy(t *testing.T, py string) {
	d := startCfkd(t, proxyConfig(py))
	if out := d.do("command start service w1"); len(out) != 1 || out[0] != "done 1" {
		t.Fatalf("start: %q", out)
	}
	pid := d.waitUp("w1", 0)
	state, ppid := d.proxyStatus("py")
	if state != "up" || ppid == 0 {
		t.Fatalf("proxystatus: %s %d", state, ppid)
	}
	if f := d.status("w1"); f[5] != "py" {
		t.Errorf("proxy column %q, want py", f[5])
	}
	if out := d.do("command pids service w1"); len(out) != 1 || out[0] != fmt.Sprintf("w1: %d, %d", ppid, pid) {
		t.Errorf("pids: %q, want w1: %d, %d", out, ppid, pid)
	}
	if parent, _, _ := procStat(t, pid); parent != ppid {
		t.Errorf("worker's parent %d, want the proxy %d", parent, ppid)
	}
	if parent, _, _ := procStat(t, ppid); parent != d.Cmd.Process.Pid {
		t.Errorf("proxy's parent %d, want cfkd %d", parent, d.Cmd.Process.Pid)
	}
	d.waitLogged(fmt.Sprintf("ready %d", pid)) // its stdout, relayed by the proxy

	d.do("command stop service w1")
	d.waitState("w1", "stopped")
	if alive := syscall.Kill(pid, 0) == nil; alive {
		t.Errorf("worker %d still alive after stop", pid)
	}
	deadline := time.Now().Add(waitLong)
	for {
		if state, _ := d.proxyStatus("py"); state == "down" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the auto proxy is still up with no service up")
		}
		time.Sleep(pollEvery)
	}
	if f := d.status("w1"); f[5] != "py!" {
		t.Errorf("proxy column %q, want py! with the proxy down", f[5])
	}
}

// Two hello_http workers forked by the proxy serve HTTP on the socket
// cfkd bound (non-blocking), handed over as fd 3; a proxy killed by -9 is replaced and its
// services come back under the new one.
func TestCfkdPythonHTTPWorkers(t *testing.T) {
	eachPython(t, testCfkdPythonHTTPWorkers)
}

func testCfkdPythonHTTPWorkers(t *testing.T, py string) {
	// O_NONBLOCK on the shared socket: the worker that loses the race for
	// a connection gets EAGAIN and must keep serving.
	d := startCfkd(t, proxyConfig(py, "nonblocking=1"))
	d.do("command start service web1")
	d.do("command start service web2")
	w1, w2 := d.waitUp("web1", 0), d.waitUp("web2", 0)
	_, ppid := d.proxyStatus("py")
	addr := strings.Split(d.do("command sockets web")[0], "\t")[1]
	if flags := fdFlags(t, w1, 3); flags&syscall.O_NONBLOCK == 0 {
		t.Errorf("fd 3 of web1 has flags %o, want O_NONBLOCK", flags)
	}

	seen := map[int]bool{}
	requests := 0
	for ; requests < 40 && len(seen) < 2; requests++ {
		worker, loadedBy := get(t, addr)
		if worker != w1 && worker != w2 || loadedBy != ppid {
			t.Fatalf("answered by %d preloaded by %d; workers %d %d, proxy %d", worker, loadedBy, w1, w2, ppid)
		}
		seen[worker] = true
	}
	t.Logf("%d requests answered by %d workers", requests, len(seen))

	syscall.Kill(ppid, syscall.SIGKILL)
	deadline := time.Now().Add(waitLong)
	for {
		state, pid := d.proxyStatus("py")
		f1, f2 := d.status("web1"), d.status("web2")
		up := func(f []string) bool { return f[1] == "starting" || f[1] == "running" }
		if state == "up" && pid != ppid && up(f1) && up(f2) && f1[2] != "" && f2[2] != "" {
			worker, loadedBy := get(t, addr)
			if loadedBy != pid {
				t.Errorf("answered by %d preloaded by %d, want the new proxy %d", worker, loadedBy, pid)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the proxy's death: proxy %s %d, web1 %q, web2 %q", state, pid, f1, f2)
		}
		time.Sleep(pollEvery)
	}
	for _, pid := range []int{w1, w2} {
		waitGone(t, pid)
	}
}

// waitGone waits until pid has exited (a zombie counts as exited: the
// orphan's new parent may not have reaped it yet).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])); len(f) > 0 && f[0] == "Z" {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("worker %d of the dead proxy still alive", pid)
			return
		}
		time.Sleep(pollEvery)
	}
}

// get asks hello_http for / and returns the worker's and the preloading
// proxy's pids.
func get(t *testing.T, addr string) (worker, loadedBy int) {
	t.Helper()
	client := http.Client{Timeout: waitLong}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if _, err := fmt.Sscanf(string(b), "hello from worker %d, preloaded by %d", &worker, &loadedBy); err != nil {
		t.Fatalf("answer %q: %v", b, err)
	}
	return worker, loadedBy
}

// fdFlags reads the file status flags of a process's fd.
func fdFlags(t *testing.T, pid, fd int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			flags, err := strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			if err != nil {
				t.Fatalf("fdinfo flags %q: %v", v, err)
			}
			return int(flags)
		}
	}
	t.Fatalf("no flags in /proc/%d/fdinfo/%d", pid, fd)
	return 0
}
