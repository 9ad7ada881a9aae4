package cfkproxy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/controlfreak-go/cfk/internal/cfkdtest"
)

// End-to-end tests with the real cfkd: the example proxy run by cfkd,
// its workers serving HTTP on sockets cfkd bound.

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

// waitState waits for a service to reach state and returns its pid.
func (d *cfkd) waitState(name, state string) int {
	d.T.Helper()
	var f []string
	waitFor(d.T, statusWait, name+" "+state, func() bool {
		f = d.status(name)
		return f[1] == state
	})
	pid, _ := strconv.Atoi(f[2])
	return pid
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

// logged tells whether cfkd.log holds text.
func (d *cfkd) logged(text string) bool {
	b, _ := os.ReadFile(filepath.Join(d.Home, "cfkd.log"))
	return strings.Contains(string(b), text)
}

// socketAddr is where socket name listens, from `command sockets`.
func (d *cfkd) socketAddr(name string) string {
	d.T.Helper()
	out := d.do("command sockets " + name)
	if len(out) != 1 {
		d.T.Fatalf("sockets %s: %q", name, out)
	}
	return strings.Split(out[0], "\t")[1]
}

func TestCfkdRunsTheExampleProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cfkd and the example")
	}
	bin, err := buildExample()
	if err != nil {
		t.Fatal(err)
	}
	argv, _ := json.Marshal([]string{bin, "-records", "100000"})
	d := startCfkd(t, strings.Join([]string{
		"socket web host=127.0.0.1",
		"socket web service=0",
		"socket web nonblocking=1",
		"command bind web",
		"socket fcgi host=127.0.0.1",
		"socket fcgi service=0",
		"command bind fcgi",
		"proxy tables cmd=" + string(argv),
		"proxy tables service lookup1 cmd=lookup",
		"proxy tables service lookup1 sockets=web",
		"proxy tables service lookup2 cmd=lookup",
		"proxy tables service lookup2 sockets=web",
		"proxy tables service bystdin cmd=lookup",
		"proxy tables service bystdin tie_stdin_to=fcgi",
		"",
	}, "\n"))
	for _, svc := range []string{"lookup1", "lookup2", "bystdin"} {
		if out := d.do("command start service " + svc); len(out) != 1 || out[0] != "done 1" {
			t.Fatalf("start %s: %q", svc, out)
		}
	}
	pids := map[string]int{}
	for _, svc := range []string{"lookup1", "lookup2", "bystdin"} {
		pids[svc] = d.waitState(svc, "running")
	}
	state, ppid := d.proxyStatus("tables")
	if state != "up" || ppid == 0 {
		t.Fatalf("proxystatus: %s %d", state, ppid)
	}
	for svc, pid := range pids {
		if f := d.status(svc); f[5] != "tables" {
			t.Errorf("%s: proxy column %q, want tables", svc, f[5])
		}
		if out := d.do("command pids service " + svc); len(out) != 1 || out[0] != fmt.Sprintf("%s: %d, %d", svc, ppid, pid) {
			t.Errorf("pids: %q, want %s: %d, %d", out, svc, ppid, pid)
		}
		if f, err := procStat(pid); err != nil || f[1] != strconv.Itoa(ppid) {
			t.Errorf("%s's parent %v (%v), want the proxy %d", svc, f, err, ppid)
		}
	}
	if f, err := procStat(ppid); err != nil || f[1] != strconv.Itoa(d.Cmd.Process.Pid) {
		t.Errorf("proxy's parent %v (%v), want cfkd %d", f, err, d.Cmd.Process.Pid)
	}
	// The workers' stdout, relayed by the proxy as out: lines, in cfkd's log.
	waitFor(t, statusWait, "the workers' output in cfkd.log", func() bool {
		return d.logged("serving 100000 records (3200000 bytes) on 1 sockets")
	})

	// Both workers answer on web, from the one table the proxy built.
	web := d.socketAddr("web")
	seen := map[int]bool{}
	for i := 0; i < 200 && len(seen) < 2; i++ {
		var info struct{ Pid, Records int }
		if err := json.Unmarshal([]byte(httpGet(t, "http://"+web+"/info")), &info); err != nil {
			t.Fatal(err)
		}
		if (info.Pid != pids["lookup1"] && info.Pid != pids["lookup2"]) || info.Records != 100000 {
			t.Fatalf("web answered by pid %d with %d records; workers %v", info.Pid, info.Records, pids)
		}
		seen[info.Pid] = true
	}
	if len(seen) < 2 {
		t.Errorf("200 requests on web reached only %v", seen)
	}
	if got := httpGet(t, "http://"+d.socketAddr("fcgi")+"/info"); !strings.Contains(got, fmt.Sprintf(`"pid":%d`, pids["bystdin"])) {
		t.Errorf("fcgi (stdin) answered %q, want pid %d", got, pids["bystdin"])
	}

	// stop is a TERM: the service is stopped, not failed.
	d.do("command stop service lookup1")
	d.waitState("lookup1", "stopped")
	if alive(pids["lookup1"]) {
		t.Errorf("lookup1 (%d) still alive after stop", pids["lookup1"])
	}
	if f := d.status("lookup1"); f[6] != "" {
		t.Errorf("lookup1's fail reason %q after a stop", f[6])
	}
	// The auto proxy goes with its last service, and takes nothing along.
	d.do("command stop service lookup2")
	d.do("command stop service bystdin")
	waitFor(t, statusWait, "proxy down", func() bool {
		state, _ := d.proxyStatus("tables")
		return state == "down"
	})
	waitFor(t, statusWait, "proxy gone", func() bool { return !alive(ppid) })
	for svc, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (%d) still alive", svc, pid)
		}
	}
}

// cfkd's shutdown takes the proxy down, and the proxy its workers.
func TestCfkdShutdownStopsProxyAndWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cfkd and the example")
	}
	bin, err := buildExample()
	if err != nil {
		t.Fatal(err)
	}
	d := startCfkd(t, strings.Join([]string{
		"socket web host=127.0.0.1",
		"socket web service=0",
		"command bind web",
		"proxy tables cmd=" + bin + " -records 1000",
		"proxy tables service a cmd=lookup",
		"proxy tables service a sockets=web",
		"proxy tables service b cmd=lookup",
		"proxy tables service b sockets=web",
		"",
	}, "\n"))
	d.do("command start service a")
	d.do("command start service b")
	pids := []int{d.waitState("a", "running"), d.waitState("b", "running")}
	_, ppid := d.proxyStatus("tables")
	d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.Done():
	case <-time.After(exitWait):
		t.Fatal("cfkd did not exit on TERM")
	}
	for _, pid := range append(pids, ppid) {
		waitFor(t, statusWait, fmt.Sprintf("pid %d gone", pid), func() bool { return !alive(pid) })
	}
}
