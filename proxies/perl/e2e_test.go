package perlproxy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/controlfreak-go/cfk/internal/cfkdtest"
	"github.com/controlfreak-go/cfk/internal/proctest"
	"github.com/controlfreak-go/cfk/internal/testenv"
)

// A proxied service runs through cfk-proxy.pl under the real cfkd: its
// proxy is visible in status, pids and proxystatus, the process tree is
// cfkd → proxy → worker, its output reaches cfkd's log, and a worker
// killed with -9 is started again through the same proxy.
func TestCfkdRunsServicesThroughThePerlProxy(t *testing.T) {
	t.Parallel()
	// The worker waits before it prints: cfkd reads a proxy's statuses and
	// its log lines on separate goroutines, and a line that overtakes the
	// started status is logged as from an unknown service.
	perl, preload, app := perlApp(t, "our $LOADED_IN = $$;\n1;\n", `select(undef, undef, undef, 0.5);
print "worker $$ of $ENV{CONTROL_FREAK_SERVICE} greets $ENV{GREETING}, preloaded in $main::LOADED_IN\n";
sleep 1 while 1;
`)
	d := cfkdtest.Start(t, fmt.Sprintf(`proxy pp cmd=["%s","%s","--preload","%s"]
proxy pp service svc cmd=%s
proxy pp service svc add_env=GREETING=hello
proxy pp service svc startwait_secs=0.2
command start service svc
`, perl, proxyScript, preload, app))

	pid := d.WaitState("svc", "running")
	if f := d.Status("svc"); f[5] != "pp" {
		t.Errorf("proxy field %q, want pp", f[5])
	}
	ps := d.Do("command proxystatus")
	if len(ps) != 1 || !strings.HasPrefix(ps[0], "pp\tup\t") {
		t.Fatalf("proxystatus %q", ps)
	}
	proxyPid, _ := strconv.Atoi(strings.Split(ps[0], "\t")[2])
	if got, want := d.Do("command pids service svc"), fmt.Sprintf("svc: %d, %d", proxyPid, pid); len(got) != 1 || got[0] != want {
		t.Errorf("pids %q, want %q", got, want)
	}
	if pp := proctest.ReadStat(t, pid).Parent; pp != proxyPid {
		t.Errorf("worker's parent %d, want the proxy %d", pp, proxyPid)
	}
	if pp := proctest.ReadStat(t, proxyPid).Parent; pp != d.Cmd.Process.Pid {
		t.Errorf("proxy's parent %d, want cfkd %d", pp, d.Cmd.Process.Pid)
	}
	if got, want := proctest.Cmdline(pid), "[cfk svc] "+app; got != want {
		t.Errorf("worker $0 %q, want %q", got, want)
	}
	logLine := fmt.Sprintf("%d INFO service.svc.out - worker %d of svc greets hello, preloaded in %d", pid, pid, proxyPid)
	d.WaitLogged(logLine)

	// kill -9: respawned through the same proxy.
	syscall.Kill(pid, syscall.SIGKILL)
	pid2 := d.WaitUp("svc", pid)
	if pp := proctest.ReadStat(t, pid2).Parent; pp != proxyPid {
		t.Errorf("respawned worker's parent %d, want the same proxy %d", pp, proxyPid)
	}

	// Down: the worker stops, then the auto proxy.
	d.Do("command down service svc")
	cfkdtest.WaitFor(t, waitTimeout, "svc stopped and the proxy gone (proxy field pp!)", func() bool {
		f := d.Status("svc")
		return f[1] == "stopped" && f[5] == "pp!" && !proctest.Alive(pid2) && !proctest.Alive(proxyPid)
	})
}

// Sockets reach a proxied worker as LISTEN_FDS, and cfkd's shutdown takes
// the proxy and its workers down.
func TestCfkdProxiedSocketsAndShutdown(t *testing.T) {
	t.Parallel()
	perl, preload, app := perlApp(t, "1;\n", `
$^F = 100;   # keep Perl from marking fd 3 close-on-exec
open(my $l, '+<&=', 3) or die "fd 3: $!";
while (accept(my $c, $l)) {
	print $c "$ENV{LISTEN_FDNAMES} $ENV{LISTEN_PID} $$\n";
	close $c;
}
`)
	d := cfkdtest.Start(t, fmt.Sprintf(`socket web host=127.0.0.1
socket web service=0
command bind web
proxy pp cmd=["%s","%s","--preload","%s"]
proxy pp service w1 cmd=%s
proxy pp service w1 sockets=web
proxy pp service w2 cmd=%s
proxy pp service w2 sockets=web
command start all
`, perl, proxyScript, preload, app, app))
	pids := map[int]bool{}
	for _, n := range []string{"w1", "w2"} {
		pids[d.WaitState(n, "running")] = true
	}
	line := cfkdtest.ReadLine(t, d.SocketAddr("web"))
	var name string
	var listenPid, self int
	if _, err := fmt.Sscanf(line, "%s %d %d", &name, &listenPid, &self); err != nil || name != "web" || listenPid != self || !pids[self] {
		t.Errorf("worker answered %q (workers %v)", line, pids)
	}
	_, proxyPid := d.ProxyStatus("pp")

	d.Shutdown()
	for pid := range pids {
		if proctest.Alive(pid) {
			t.Errorf("worker %d outlived cfkd", pid)
		}
	}
	if proctest.Alive(proxyPid) {
		t.Errorf("proxy %d outlived cfkd", proxyPid)
	}
}

// perlApp finds perl and writes the Perl source of a proxy's preload and
// of its services' app, for cfkd to run through cfk-proxy.pl. It returns
// their paths.
func perlApp(t *testing.T, preloadSource, appSource string) (perl, preload, app string) {
	t.Helper()
	perl = testenv.RequireTool(t, "perl")
	dir := t.TempDir()
	preload, app = filepath.Join(dir, "preload.pl"), filepath.Join(dir, "app.pl")
	for path, source := range map[string]string{preload: preloadSource, app: appSource} {
		if err := os.WriteFile(path, []byte(source), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return perl, preload, app
}
