package cfkproxy

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/controlfreak-go/cfk/internal/cfkdtest"
	"github.com/controlfreak-go/cfk/internal/proctest"
)

// End-to-end tests with the real cfkd: the example proxy run by cfkd,
// its workers serving HTTP on sockets cfkd bound.

func TestCfkdRunsTheExampleProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cfkd and the example")
	}
	argv, _ := json.Marshal([]string{example.Path(t), "-records", "100000"})
	d := cfkdtest.Start(t, strings.Join([]string{
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
		if out := d.Do("command start service " + svc); len(out) != 1 || out[0] != "done 1" {
			t.Fatalf("start %s: %q", svc, out)
		}
	}
	pids := map[string]int{}
	for _, svc := range []string{"lookup1", "lookup2", "bystdin"} {
		pids[svc] = d.WaitState(svc, "running")
	}
	state, ppid := d.ProxyStatus("tables")
	if state != "up" || ppid == 0 {
		t.Fatalf("proxystatus: %s %d", state, ppid)
	}
	for svc, pid := range pids {
		if f := d.Status(svc); f[5] != "tables" {
			t.Errorf("%s: proxy column %q, want tables", svc, f[5])
		}
		if out := d.Do("command pids service " + svc); len(out) != 1 || out[0] != fmt.Sprintf("%s: %d, %d", svc, ppid, pid) {
			t.Errorf("pids: %q, want %s: %d, %d", out, svc, ppid, pid)
		}
		if parent := proctest.ReadStat(t, pid).Parent; parent != ppid {
			t.Errorf("%s's parent %d, want the proxy %d", svc, parent, ppid)
		}
	}
	if parent := proctest.ReadStat(t, ppid).Parent; parent != d.Cmd.Process.Pid {
		t.Errorf("proxy's parent %d, want cfkd %d", parent, d.Cmd.Process.Pid)
	}
	// The workers' stdout, relayed by the proxy as out: lines, in cfkd's log.
	d.WaitLogged("serving 100000 records (3200000 bytes) on 1 sockets")

	// Both workers answer on web, from the one table the proxy built.
	web := d.SocketAddr("web")
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
	if got := httpGet(t, "http://"+d.SocketAddr("fcgi")+"/info"); !strings.Contains(got, fmt.Sprintf(`"pid":%d`, pids["bystdin"])) {
		t.Errorf("fcgi (stdin) answered %q, want pid %d", got, pids["bystdin"])
	}

	// stop is a TERM: the service is stopped, not failed.
	d.Do("command stop service lookup1")
	d.WaitState("lookup1", "stopped")
	if proctest.Alive(pids["lookup1"]) {
		t.Errorf("lookup1 (%d) still alive after stop", pids["lookup1"])
	}
	if f := d.Status("lookup1"); f[6] != "" {
		t.Errorf("lookup1's fail reason %q after a stop", f[6])
	}
	// The auto proxy goes with its last service, and takes nothing along.
	d.Do("command stop service lookup2")
	d.Do("command stop service bystdin")
	d.WaitProxy("tables", "down")
	cfkdtest.WaitFor(t, statusWait, "proxy gone", func() bool { return !proctest.Alive(ppid) })
	for svc, pid := range pids {
		if proctest.Alive(pid) {
			t.Errorf("%s (%d) still alive", svc, pid)
		}
	}
}

// cfkd's shutdown takes the proxy down, and the proxy its workers.
func TestCfkdShutdownStopsProxyAndWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cfkd and the example")
	}
	d := cfkdtest.Start(t, strings.Join([]string{
		"socket web host=127.0.0.1",
		"socket web service=0",
		"command bind web",
		"proxy tables cmd=" + example.Path(t) + " -records 1000",
		"proxy tables service a cmd=lookup",
		"proxy tables service a sockets=web",
		"proxy tables service b cmd=lookup",
		"proxy tables service b sockets=web",
		"",
	}, "\n"))
	d.Do("command start service a")
	d.Do("command start service b")
	pids := []int{d.WaitState("a", "running"), d.WaitState("b", "running")}
	_, ppid := d.ProxyStatus("tables")
	d.Shutdown()
	for _, pid := range append(pids, ppid) {
		cfkdtest.WaitFor(t, statusWait, fmt.Sprintf("pid %d gone", pid), func() bool { return !proctest.Alive(pid) })
	}
}
