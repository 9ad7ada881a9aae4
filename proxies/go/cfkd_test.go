package cfkproxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// End-to-end tests with the real cfkd: the example proxy run by cfkd,
// its workers serving HTTP on sockets cfkd bound.

// buildCfkd builds cfkd once; it is edited by others, so when it does not
// build the tests that need it skip and say why.
var buildCfkd = sync.OnceValues(func() (string, error) {
	exampleBuilt = true // the same temporary directory is removed
	bin, err := buildExample()
	if err != nil {
		return "", err
	}
	cfkd := filepath.Join(filepath.Dir(bin), "cfkd")
	out, err := exec.Command("go", "build", "-o", cfkd, "github.com/controlfreak-go/cfk/cmd/cfkd").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%v\n%s", err, out)
	}
	return cfkd, nil
})

// cfkd is a running cfkd and a console connection to it.
type cfkd struct {
	t    *testing.T
	home string
	cmd  *exec.Cmd
	conn net.Conn
	r    *bufio.Reader
	done chan struct{}
}

// startCfkd runs cfkd in the foreground with config loaded at start.
func startCfkd(t *testing.T, config string) *cfkd {
	t.Helper()
	bin, err := buildCfkd()
	if err != nil {
		t.Skipf("cfkd does not build: %v", err)
	}
	home := t.TempDir()
	cfg := filepath.Join(home, "test.conf")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &cfkd{t: t, home: home, done: make(chan struct{})}
	d.cmd = exec.Command(bin, "--home", home, "-c", cfg)
	d.cmd.Stderr = os.Stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		if d.conn != nil {
			d.conn.Close()
		}
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(exitWait):
			t.Errorf("cfkd did not stop on TERM")
			d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(home, "cfkd.log"))
			t.Logf("cfkd.log:\n%s", b)
		}
	})
	sock := filepath.Join(home, "sock")
	waitFor(t, statusWait, "cfkd's console", func() bool {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return false
		}
		d.conn, d.r = c, bufio.NewReader(c)
		return true
	})
	return d
}

// do sends one console line and returns the output lines before OK.
func (d *cfkd) do(line string) []string {
	d.t.Helper()
	d.conn.SetDeadline(time.Now().Add(statusWait))
	if _, err := io.WriteString(d.conn, line+"\n"); err != nil {
		d.t.Fatalf("%s: %v", line, err)
	}
	var out []string
	for {
		l, err := d.r.ReadString('\n')
		if err != nil {
			d.t.Fatalf("%s: %v", line, err)
		}
		switch {
		case l == "OK\r\n":
			return out
		case strings.HasPrefix(l, "ERROR:"):
			d.t.Fatalf("%s: %s", line, strings.TrimSpace(l))
		}
		out = append(out, strings.TrimSuffix(l, "\n"))
	}
}

// status returns a service's status fields: name state pid start_time
// stop_time proxy fail_reason running_cmd.
func (d *cfkd) status(name string) []string {
	d.t.Helper()
	out := d.do("command status service " + name)
	if len(out) != 1 {
		d.t.Fatalf("status %s: %q", name, out)
	}
	return strings.Split(out[0], "\t")
}

// waitState waits for a service to reach state and returns its pid.
func (d *cfkd) waitState(name, state string) int {
	d.t.Helper()
	var f []string
	waitFor(d.t, statusWait, name+" "+state, func() bool {
		f = d.status(name)
		return f[1] == state
	})
	pid, _ := strconv.Atoi(f[2])
	return pid
}

// proxyStatus returns a proxy's state and pid from proxystatus.
func (d *cfkd) proxyStatus(name string) (string, int) {
	d.t.Helper()
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
	d.t.Fatalf("no proxy %s in proxystatus", name)
	return "", 0
}

// logged tells whether cfkd.log holds text.
func (d *cfkd) logged(text string) bool {
	b, _ := os.ReadFile(filepath.Join(d.home, "cfkd.log"))
	return strings.Contains(string(b), text)
}

// socketAddr is where socket name listens, from `command sockets`.
func (d *cfkd) socketAddr(name string) string {
	d.t.Helper()
	out := d.do("command sockets " + name)
	if len(out) != 1 {
		d.t.Fatalf("sockets %s: %q", name, out)
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
	if f, err := procStat(ppid); err != nil || f[1] != strconv.Itoa(d.cmd.Process.Pid) {
		t.Errorf("proxy's parent %v (%v), want cfkd %d", f, err, d.cmd.Process.Pid)
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
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(exitWait):
		t.Fatal("cfkd did not exit on TERM")
	}
	for _, pid := range append(pids, ppid) {
		waitFor(t, statusWait, fmt.Sprintf("pid %d gone", pid), func() bool { return !alive(pid) })
	}
}
