package perlproxy_test

import (
	"bufio"
	"fmt"
	"net"
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

// A proxied service runs through cfk-proxy.pl under the real cfkd: its
// proxy is visible in status, pids and proxystatus, the process tree is
// cfkd → proxy → worker, its output reaches cfkd's log, and a worker
// killed with -9 is started again through the same proxy.
func TestCfkdRunsServicesThroughThePerlProxy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	preload := filepath.Join(dir, "preload.pl")
	app := filepath.Join(dir, "app.pl")
	os.WriteFile(preload, []byte("our $LOADED_IN = $$;\n1;\n"), 0o644)
	// The worker waits before it prints: cfkd reads a proxy's statuses and
	// its log lines on separate goroutines, and a line that overtakes the
	// started status is logged as from an unknown service.
	os.WriteFile(app, []byte(`select(undef, undef, undef, 0.5);
print "worker $$ of $ENV{CONTROL_FREAK_SERVICE} greets $ENV{GREETING}, preloaded in $main::LOADED_IN\n";
sleep 1 while 1;
`), 0o644)
	d := startCfkd(t, fmt.Sprintf(`proxy pp cmd=["perl","%s","--preload","%s"]
proxy pp service svc cmd=%s
proxy pp service svc add_env=GREETING=hello
proxy pp service svc startwait_secs=0.2
command start service svc
`, proxyScript, preload, app))

	var f []string
	waitFor(t, waitTimeout, "svc running", func() bool {
		f = d.status("svc")
		return f[1] == "running"
	})
	pid, _ := strconv.Atoi(f[2])
	if f[5] != "pp" {
		t.Errorf("proxy field %q, want pp", f[5])
	}
	ps := d.do("command proxystatus")
	if len(ps) != 1 || !strings.HasPrefix(ps[0], "pp\tup\t") {
		t.Fatalf("proxystatus %q", ps)
	}
	proxyPid, _ := strconv.Atoi(strings.Split(ps[0], "\t")[2])
	if got, want := d.do("command pids service svc"), fmt.Sprintf("svc: %d, %d", proxyPid, pid); len(got) != 1 || got[0] != want {
		t.Errorf("pids %q, want %q", got, want)
	}
	if pp := ppidOf(pid); pp != proxyPid {
		t.Errorf("worker's parent %d, want the proxy %d", pp, proxyPid)
	}
	if pp := ppidOf(proxyPid); pp != d.Cmd.Process.Pid {
		t.Errorf("proxy's parent %d, want cfkd %d", pp, d.Cmd.Process.Pid)
	}
	if got, want := cmdline(pid), "[cfk svc] "+app; got != want {
		t.Errorf("worker $0 %q, want %q", got, want)
	}
	logLine := fmt.Sprintf("%d INFO service.svc.out - worker %d of svc greets hello, preloaded in %d", pid, pid, proxyPid)
	waitFor(t, waitTimeout, "the worker's line in cfkd.log", func() bool {
		b, _ := os.ReadFile(filepath.Join(d.Home, "cfkd.log"))
		return strings.Contains(string(b), logLine)
	})

	// kill -9: respawned through the same proxy.
	syscall.Kill(pid, syscall.SIGKILL)
	var pid2 int
	waitFor(t, waitTimeout, "svc respawned", func() bool {
		f = d.status("svc")
		pid2, _ = strconv.Atoi(f[2])
		return pid2 != 0 && pid2 != pid && (f[1] == "running" || f[1] == "starting")
	})
	if pp := ppidOf(pid2); pp != proxyPid {
		t.Errorf("respawned worker's parent %d, want the same proxy %d", pp, proxyPid)
	}

	// Down: the worker stops, then the auto proxy.
	d.do("command down service svc")
	waitFor(t, waitTimeout, "svc stopped and the proxy gone (proxy field pp!)", func() bool {
		f = d.status("svc")
		return f[1] == "stopped" && f[5] == "pp!" && !alive(pid2) && !alive(proxyPid)
	})
}

// Sockets reach a proxied worker as LISTEN_FDS, and cfkd's shutdown takes
// the proxy and its workers down.
func TestCfkdProxiedSocketsAndShutdown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	preload := filepath.Join(dir, "preload.pl")
	app := filepath.Join(dir, "app.pl")
	os.WriteFile(preload, []byte("1;\n"), 0o644)
	os.WriteFile(app, []byte(`
$^F = 100;   # keep Perl from marking fd 3 close-on-exec
open(my $l, '+<&=', 3) or die "fd 3: $!";
while (accept(my $c, $l)) {
	print $c "$ENV{LISTEN_FDNAMES} $ENV{LISTEN_PID} $$\n";
	close $c;
}
`), 0o644)
	d := startCfkd(t, fmt.Sprintf(`socket web host=127.0.0.1
socket web service=0
command bind web
proxy pp cmd=["perl","%s","--preload","%s"]
proxy pp service w1 cmd=%s
proxy pp service w1 sockets=web
proxy pp service w2 cmd=%s
proxy pp service w2 sockets=web
command start all
`, proxyScript, preload, app, app))
	pids := map[int]bool{}
	waitFor(t, waitTimeout, "both workers running", func() bool {
		for _, n := range []string{"w1", "w2"} {
			if f := d.status(n); f[1] != "running" {
				return false
			}
		}
		return true
	})
	for _, n := range []string{"w1", "w2"} {
		pid, _ := strconv.Atoi(d.status(n)[2])
		pids[pid] = true
	}
	var addr string
	for _, l := range d.do("command sockets") {
		for _, w := range strings.Fields(l) {
			if strings.HasPrefix(w, "127.0.0.1:") {
				addr = w
			}
		}
	}
	if addr == "" {
		t.Fatalf("no address in %q", d.do("command sockets"))
	}
	c, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(waitTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	var name string
	var listenPid, self int
	if _, err := fmt.Sscanf(line, "%s %d %d", &name, &listenPid, &self); err != nil || name != "web" || listenPid != self || !pids[self] {
		t.Errorf("worker answered %q (workers %v)", line, pids)
	}
	ps := d.do("command proxystatus")
	proxyPid, _ := strconv.Atoi(strings.Split(ps[0], "\t")[2])

	d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.Done():
	case <-time.After(waitTimeout):
		t.Fatal("cfkd did not exit")
	}
	if d.Cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("cfkd exit code %d", d.Cmd.ProcessState.ExitCode())
	}
	for pid := range pids {
		if alive(pid) {
			t.Errorf("worker %d outlived cfkd", pid)
		}
	}
	if alive(proxyPid) {
		t.Errorf("proxy %d outlived cfkd", proxyPid)
	}
}
