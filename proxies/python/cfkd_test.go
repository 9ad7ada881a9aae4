package pythonproxy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/controlfreak-go/cfk/internal/cfkdtest"
	"github.com/controlfreak-go/cfk/internal/proctest"
)

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
	d := cfkdtest.Start(t, proxyConfig(py))
	if out := d.Do("command start service w1"); len(out) != 1 || out[0] != "done 1" {
		t.Fatalf("start: %q", out)
	}
	pid := d.WaitUp("w1", 0)
	state, ppid := d.ProxyStatus("py")
	if state != "up" || ppid == 0 {
		t.Fatalf("proxystatus: %s %d", state, ppid)
	}
	if f := d.Status("w1"); f[5] != "py" {
		t.Errorf("proxy column %q, want py", f[5])
	}
	if out := d.Do("command pids service w1"); len(out) != 1 || out[0] != fmt.Sprintf("w1: %d, %d", ppid, pid) {
		t.Errorf("pids: %q, want w1: %d, %d", out, ppid, pid)
	}
	if parent := proctest.ReadStat(t, pid).Parent; parent != ppid {
		t.Errorf("worker's parent %d, want the proxy %d", parent, ppid)
	}
	if parent := proctest.ReadStat(t, ppid).Parent; parent != d.Cmd.Process.Pid {
		t.Errorf("proxy's parent %d, want cfkd %d", parent, d.Cmd.Process.Pid)
	}
	d.WaitLogged(fmt.Sprintf("ready %d", pid)) // its stdout, relayed by the proxy

	d.Do("command stop service w1")
	d.WaitState("w1", "stopped")
	if alive := syscall.Kill(pid, 0) == nil; alive {
		t.Errorf("worker %d still alive after stop", pid)
	}
	d.WaitProxy("py", "down") // the auto proxy goes with its last service
	if f := d.Status("w1"); f[5] != "py!" {
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
	d := cfkdtest.Start(t, proxyConfig(py, "nonblocking=1"))
	d.Do("command start service web1")
	d.Do("command start service web2")
	w1, w2 := d.WaitUp("web1", 0), d.WaitUp("web2", 0)
	_, ppid := d.ProxyStatus("py")
	addr := d.SocketAddr("web")
	if flags := proctest.FdFlags(t, w1, 3); flags&syscall.O_NONBLOCK == 0 {
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
		state, pid := d.ProxyStatus("py")
		f1, f2 := d.Status("web1"), d.Status("web2")
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
	// A zombie counts as gone: the orphan's new parent may not have reaped
	// it yet.
	for _, pid := range []int{w1, w2} {
		cfkdtest.WaitFor(t, waitLong, fmt.Sprintf("worker %d of the dead proxy to go", pid), func() bool { return !proctest.Alive(pid) })
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
