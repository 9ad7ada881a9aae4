package perlproxy_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/controlfreak-go/cfk/internal/cfkdtest"
	"github.com/controlfreak-go/cfk/internal/proctest"
	"github.com/controlfreak-go/cfk/internal/testenv"
)

// The wait statuses the protocol carries (Perl's $?).
const (
	waitTERM  = 15     // killed by SIGTERM
	waitKILL  = 9      // killed by SIGKILL
	waitExit3 = 3 << 8 // exit(3)
)

// reportScript is a service that says what it sees, then waits.
const reportScript = `
print "env service=$ENV{CONTROL_FREAK_SERVICE} enabled=$ENV{CONTROL_FREAK_ENABLED} custom=",
      ($ENV{CUSTOM} // ''), " cfk=", join(',', sort grep { /^_CFK_/ } keys %ENV), "\n";
print STDERR "to stderr\n";
print "preloaded=", ($main::PRELOADED_BY // 'none'), " self=$$ args=@ARGV\n";
sleep 1 while 1;
`

// sleepScript waits for its end.
const sleepScript = "sleep 1 while 1;\n"

func TestStartOutputEnvAndStop(t *testing.T) {
	t.Parallel()
	h := startProxy(t, options{preload: "our $PRELOADED_BY = $$;\n1;\n"})
	svc := h.write("report.pl", reportScript)
	h.Start("w1", []string{svc, "a1", "a2"}, map[string]any{"env": map[string]string{"CUSTOM": "v 1"}})
	pid := h.Started("w1")
	if pp := proctest.ReadStat(t, pid).Parent; pp != h.Pid() {
		t.Errorf("parent of the service is %d, want the proxy %d", pp, h.Pid())
	}
	if sid := proctest.ReadStat(t, pid).Session; sid != pid {
		t.Errorf("service session %d, want its own (%d)", sid, pid)
	}
	if got, want := h.WaitLog("out:w1:env "), "out:w1:env service=w1 enabled=1 custom=v 1 cfk="; got != want {
		t.Errorf("env line %q, want %q", got, want)
	}
	h.WaitLog("err:w1:to stderr")
	if got, want := h.WaitLog("out:w1:preloaded="), fmt.Sprintf("out:w1:preloaded=%d self=%d args=a1 a2", h.Pid(), pid); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := proctest.Cmdline(pid), "[cfk w1] "+svc+" a1 a2"; got != want {
		t.Errorf("$0 is %q, want %q", got, want)
	}
	if fds := openFds(t, pid); !reflect.DeepEqual(fds, []int{0, 1, 2}) {
		t.Errorf("service fds %v, want [0 1 2]", fds)
	}
	if in := proctest.Fds(t, pid)[0]; in != "/dev/null" {
		t.Errorf("stdin is %s, want /dev/null", in)
	}

	h.Stop("w1")
	if ws := h.Stopped("w1", pid); ws != waitTERM {
		t.Errorf("exit_status %d, want %d (SIGTERM)", ws, waitTERM)
	}
	if proctest.Alive(pid) {
		t.Error("service still alive after its stopped status")
	}
}

func TestExitStatus(t *testing.T) {
	t.Parallel()
	h := startProxy(t, options{})
	h.Start("e3", h.write("exit3.pl", "exit 3;\n"), nil)
	pid := h.Started("e3")
	if ws := h.Stopped("e3", pid); ws != waitExit3 {
		t.Errorf("exit_status %d, want %d", ws, waitExit3)
	}
	// A file that dies, one that does not compile, one that is not there.
	h.Start("dies", h.write("dies.pl", "die qq{no luck\\n};\n"), nil)
	if ws := h.Stopped("dies", h.Started("dies")); ws != 255<<8 {
		t.Errorf("die: exit_status %d, want %d", ws, 255<<8)
	}
	h.WaitLog("err:dies:no luck")
	h.Start("syntax", h.write("syntax.pl", "sub {\n"), nil)
	if ws := h.Stopped("syntax", h.Started("syntax")); ws != 255<<8 {
		t.Errorf("syntax error: exit_status %d, want %d", ws, 255<<8)
	}
	h.WaitLog("err:syntax:Missing right curly")
	h.Start("missing", "/nonexistent/x.pl", nil)
	if ws := h.Stopped("missing", h.Started("missing")); ws != 2<<8 {
		t.Errorf("missing file: exit_status %d, want %d", ws, 2<<8)
	}
	h.WaitLog("err:missing:cfk-proxy: cannot run /nonexistent/x.pl")
	// Each exit is reported once.
	time.Sleep(100 * time.Millisecond)
	n := 0
	for _, st := range h.Statuses() {
		if st.Status == "stopped" && st.Name == "e3" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d stopped statuses for one exit", n)
	}
}

func TestPreloadReturningCode(t *testing.T) {
	t.Parallel()
	h := startProxy(t, options{preload: `our $LOADED_IN = $$;
sub { print "coderef ran in $$ for $ENV{CONTROL_FREAK_SERVICE}, loaded in $LOADED_IN\n"; sleep 1 while 1 };
`})
	h.Start("c1", "/ignored/by/the/coderef.pl", nil)
	pid := h.Started("c1")
	want := fmt.Sprintf("out:c1:coderef ran in %d for c1, loaded in %d", pid, h.Pid())
	if got := h.WaitLog("out:c1:coderef ran"); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := proctest.Cmdline(pid); got != "[cfk c1] /ignored/by/the/coderef.pl" {
		t.Errorf("$0 is %q", got)
	}
	h.Stop("c1")
	if ws := h.Stopped("c1", pid); ws != waitTERM {
		t.Errorf("exit_status %d", ws)
	}
}

// The preload runs once, in the proxy; every service sees what it built.
func TestPreloadedOnce(t *testing.T) {
	t.Parallel()
	counter := t.TempDir() + "/loads"
	h := startProxy(t, options{
		preload: `open my $f, '>>', $ENV{LOAD_COUNTER} or die; print $f "loaded in $$\n"; close $f;
our $PRELOADED_BY = $$; our %DATA = map { $_ => $_ * 2 } 1 .. 1000;
# An application's subs in main must not trouble the proxy's.
use List::Util qw(max);
sub run { die "the application's run" } sub main { die } sub spawn { die } sub log_line { die }
1;
`,
		env: []string{"LOAD_COUNTER=" + counter},
	})
	svc := h.write("svc.pl", `print "data=$DATA{500} by=$PRELOADED_BY\n"; sleep 1 while 1;`)
	for _, name := range []string{"a", "b", "c"} {
		h.Start(name, svc, nil)
	}
	for _, name := range []string{"a", "b", "c"} {
		h.Started(name)
		if got, want := h.WaitLog("out:"+name+":"), fmt.Sprintf("out:%s:data=1000 by=%d", name, h.Pid()); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	b, err := os.ReadFile(counter)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("loaded in %d\n", h.Pid()); string(b) != want {
		t.Errorf("preload ran %q, want once in the proxy: %q", b, want)
	}
}

// Children the preloaded code forks itself are reaped, and not reported.
func TestPreloadChildrenAreNotServices(t *testing.T) {
	t.Parallel()
	h := startProxy(t, options{preload: "for (1 .. 3) { if (fork == 0) { exit 7 } }\n1;\n"})
	h.Start("s", h.write("s.pl", `print "up\n"; sleep 1 while 1;`), nil)
	pid := h.Started("s")
	h.WaitLog("out:s:up")
	cfkdtest.WaitFor(t, waitTimeout, "the preload's children reaped", func() bool {
		return reflect.DeepEqual(proctest.Children(h.Pid()), []int{pid})
	})
	h.Stop("s")
	h.Stopped("s", pid)
	time.Sleep(50 * time.Millisecond)
	if st := h.Statuses(); len(st) != 2 {
		t.Errorf("statuses %+v, want the service's two only", st)
	}
}

func TestTieStdinTo(t *testing.T) {
	t.Parallel()
	h := startProxy(t, options{sockets: []string{"fcgi", "other"}})
	svc := h.write("accept.pl", `
accept(my $c, \*STDIN) or die "accept: $!";
print $c "hello from $$\n";
close $c;
sleep 1 while 1;
`)
	h.Start("f1", svc, map[string]any{"tie_stdin_to": "fcgi"})
	pid := h.Started("f1")
	// Started means set up: the fds are final (until it accepts).
	if fds := openFds(t, pid); !reflect.DeepEqual(fds, []int{0, 1, 2}) {
		t.Errorf("service fds %v, want [0 1 2] (no other socket)", fds)
	}
	if in := proctest.Fds(t, pid)[0]; !strings.HasPrefix(in, "socket:") {
		t.Errorf("stdin is %s, want the socket", in)
	}
	if line, want := cfkdtest.ReadLine(t, h.Socket("fcgi").Addr), fmt.Sprintf("hello from %d", pid); line != want {
		t.Errorf("got %q, want %q", line, want)
	}
}

// Sockets arrive at 3, 4 in the order asked, although the proxy has them
// the other way round (and at the very fds they go to).
func TestSocketsListenFds(t *testing.T) {
	t.Parallel()
	h := startProxy(t, options{sockets: []string{"web", "api", "unused"}, socketsFirst: true})
	svc := h.write("listen.pl", `
use Socket qw(unpack_sockaddr_in);
$^F = 100;   # Perl's open would set close-on-exec on the fds and hide what the proxy did
my (@socks, @ports);   # the handles are kept: a handle going away closes its fd
for my $fd (3 .. 2 + $ENV{LISTEN_FDS}) {
	open(my $s, '+<&=', $fd) or die "fd $fd: $!";
	push @socks, $s;
	push @ports, (unpack_sockaddr_in(getsockname($s)))[0];
}
print "fds=$ENV{LISTEN_FDS} names=$ENV{LISTEN_FDNAMES} listen_pid=$ENV{LISTEN_PID} self=$$ ports=@ports\n";
accept(my $c, $socks[0]) or die "accept: $!";
print $c "accepted on fd 3\n";
close $c;
sleep 1 while 1;
`)
	h.Start("s1", svc, map[string]any{"sockets": []string{"api", "web"}})
	pid := h.Started("s1")
	port := func(name string) string {
		_, port, _ := net.SplitHostPort(h.Socket(name).Addr)
		return port
	}
	want := fmt.Sprintf("out:s1:fds=2 names=api:web listen_pid=%d self=%d ports=%s %s", pid, pid, port("api"), port("web"))
	if got := h.WaitLog("out:s1:fds="); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if fds := openFds(t, pid); !reflect.DeepEqual(fds, []int{0, 1, 2, 3, 4}) {
		t.Errorf("service fds %v, want [0 1 2 3 4]", fds)
	}
	for _, fd := range []int{3, 4} {
		if proctest.FdFlags(t, pid, fd)&syscall.O_CLOEXEC != 0 {
			t.Errorf("fd %d has close-on-exec", fd)
		}
	}
	if line := cfkdtest.ReadLine(t, h.Socket("api").Addr); line != "accepted on fd 3" {
		t.Errorf("got %q", line)
	}
}

func TestUnknownSocketFailsTheService(t *testing.T) {
	t.Parallel()
	h := startProxy(t, options{sockets: []string{"web"}})
	h.Start("u", h.write("u.pl", sleepScript), map[string]any{"sockets": []string{"nope"}})
	if ws := h.Stopped("u", h.Started("u")); ws != 127<<8 {
		t.Errorf("exit_status %d, want %d", ws, 127<<8)
	}
	h.WaitLog("err:-:u cannot run: socket 'nope' was not given to this proxy")
	h.WaitLog("err:u:cfk-proxy: u cannot run: socket 'nope'")
}

func TestIgnoreOutputAndNoNewSession(t *testing.T) {
	t.Parallel()
	h := startProxy(t, options{})
	svc := h.write("quiet.pl", `print "out\n"; print STDERR "err\n"; sleep 1 while 1;`)
	// Perl's false values as the original cfkd sent them.
	h.Start("q", svc, map[string]any{"ignore_stdout": true, "ignore_stderr": 1, "no_new_session": ""})
	h.Start("n", h.write("n.pl", sleepScript), map[string]any{"ignore_stdout": nil, "no_new_session": true})
	q, n := h.Started("q"), h.Started("n")
	for _, fd := range []int{1, 2} {
		if got := proctest.Fds(t, q)[fd]; got != "/dev/null" {
			t.Errorf("fd %d of an ignoring service is %s", fd, got)
		}
	}
	if got := proctest.Fds(t, n)[1]; !strings.HasPrefix(got, "pipe:") {
		t.Errorf("stdout is %s, want a pipe", got)
	}
	if sid := proctest.ReadStat(t, q).Session; sid != q {
		t.Errorf("q has session %d, want its own", sid)
	}
	if sid, proxySid := proctest.ReadStat(t, n).Session, proctest.ReadStat(t, h.Pid()).Session; sid != proxySid {
		t.Errorf("no_new_session: session %d, want the proxy's %d", sid, proxySid)
	}
	h.Stop("n")
	if ws := h.Stopped("n", n); ws != waitTERM {
		t.Errorf("exit_status %d", ws)
	}
	if !proctest.Alive(h.Pid()) {
		t.Error("stopping a no_new_session service killed the proxy")
	}
	time.Sleep(50 * time.Millisecond)
	for _, l := range h.Logs() {
		if strings.HasPrefix(l, "out:q:") || strings.HasPrefix(l, "err:q:") {
			t.Errorf("ignored output logged: %q", l)
		}
	}
}

func TestBadCommandsAreLogged(t *testing.T) {
	t.Parallel()
	h := startProxy(t, options{})
	h.SendLine("{not json")
	h.WaitLog("err:-:malformed command '{not json'")
	h.SendLine("[1,2]")
	h.WaitLog("err:-:malformed command '[1,2]': not a JSON object")
	h.SendLine(`{"command":"dance","name":"x"}`)
	h.WaitLog("err:-:unknown command 'dance'")
	h.Stop("nobody")
	h.WaitLog("err:-:stop: unknown service 'nobody'")
	h.SendLine(`{"command":"start"}`)
	h.WaitLog("err:-:start: the command has no valid service name")
	// Still working.
	h.Start("ok", h.write("ok.pl", `print "fine\n"; sleep 1 while 1;`), nil)
	pid := h.Started("ok")
	h.WaitLog("out:ok:fine")
	// A second start of a running service reports it again.
	h.Start("ok", h.write("ok.pl", sleepScript), nil)
	h.WaitLog("err:-:ok is already running (pid " + strconv.Itoa(pid) + ")")
	cfkdtest.WaitFor(t, waitTimeout, "the second started status", func() bool {
		n := 0
		for _, st := range h.Statuses() {
			if st.Status == "started" {
				n++
				if st.Pid != pid {
					t.Fatalf("second start forked pid %d", st.Pid)
				}
			}
		}
		return n == 2
	})
}

func TestOutputLines(t *testing.T) {
	t.Parallel()
	h := startProxy(t, options{})
	h.Start("o", h.write("lines.pl", `
print "abc"; select(undef, undef, undef, 0.2); print "def\n";
print "y" x 40000, "\n";
print STDERR "e1\ne2\n";
print "tail";
exit 0;
`), nil)
	pid := h.Started("o")
	if ws := h.Stopped("o", pid); ws != 0 {
		t.Errorf("exit_status %d", ws)
	}
	h.WaitLog("out:o:tail")
	out, errs := h.Lines("out", "o"), h.Lines("err", "o")
	want := []string{"abcdef", strings.Repeat("y", 16384), strings.Repeat("y", 16384), strings.Repeat("y", 40000-2*16384), "tail"}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("stdout lines (lengths) %v, want %v", lens(out), lens(want))
		if len(out) > 0 {
			t.Errorf("first: %q", out[0])
		}
	}
	if !reflect.DeepEqual(errs, []string{"e1", "e2"}) {
		t.Errorf("stderr lines %q", errs)
	}
}

// A long line is cut at 16 KiB, moved back to the start of a UTF-8
// character.
func TestOutputLineCutKeepsUTF8(t *testing.T) {
	t.Parallel()
	h := startProxy(t, options{})
	h.Start("u", h.write("utf8.pl", `
binmode STDOUT, ':utf8';
print "a" x 16383, "\x{e9}", "b\n";
exit 0;
`), nil)
	h.Stopped("u", h.Started("u"))
	h.WaitLog("out:u:\xc3\xa9b")
	first := h.WaitLog("out:u:aaa")
	if len(first) != len("out:u:")+16383 {
		t.Errorf("first piece is %d bytes, want 16383 (cut before the é)", len(first)-len("out:u:"))
	}
}

func lens(s []string) []int {
	var n []int
	for _, x := range s {
		n = append(n, len(x))
	}
	return n
}

// A cfkd that does not read the log pipe blocks neither the proxy nor the
// services: statuses still come, old log lines are dropped and counted.
func TestLogBackpressure(t *testing.T) {
	t.Parallel()
	h := startProxy(t, options{pauseLogs: true})
	h.Start("spew", h.write("spew.pl", `
my $pad = "z" x 90;
print "line $_ $pad\n" for 1 .. 200_000;
print "last line\n";
exit 0;
`), nil)
	pid := h.Started("spew")
	if ws := h.Stopped("spew", pid); ws != 0 {
		t.Errorf("exit_status %d", ws)
	}
	h.ReadLogs()
	h.WaitLog("out:spew:last line")
	dropped := h.WaitLog("err:-:")
	if !strings.Contains(dropped, "log lines were dropped") {
		t.Errorf("first proxy error %q, want the dropped count", dropped)
	}
	n := len(h.Logs())
	if n > 20_000 {
		t.Errorf("%d log lines kept: the buffer is not bounded", n)
	}
}

func TestTermStopsEverything(t *testing.T) {
	t.Parallel()
	h := startProxy(t, options{})
	h.Start("a", h.write("a.pl", sleepScript), nil)
	h.Start("b", h.write("b.pl", `
if (fork == 0) { sleep 1 while 1 }   # a grandchild in b's group
sleep 1 while 1;
`), nil)
	a, b := h.Started("a"), h.Started("b")
	var grandchild int
	cfkdtest.WaitFor(t, waitTimeout, "b's grandchild", func() bool {
		grandchild = childOf(b)
		return grandchild != 0
	})
	h.Signal(syscall.SIGTERM)
	if code := h.WaitExit(); code != 0 {
		t.Errorf("proxy exit code %d, want 0", code)
	}
	for _, pid := range []int{a, b} {
		if proctest.Alive(pid) {
			t.Errorf("pid %d outlived the proxy", pid)
		}
	}
	// The grandchild got its TERM with b's group; it is not the proxy's
	// child, so the proxy does not wait for it to be gone.
	cfkdtest.WaitFor(t, waitTimeout, "the grandchild to die", func() bool { return !proctest.Alive(grandchild) })
	if ws := h.Stopped("a", a); ws != waitTERM {
		t.Errorf("a: exit_status %d", ws)
	}
	if ws := h.Stopped("b", b); ws != waitTERM {
		t.Errorf("b: exit_status %d", ws)
	}
	h.WaitLog("out:-:got SIGTERM: stopping 2 services")
}

func TestEOFOnCommandPipeStopsEverything(t *testing.T) {
	t.Parallel()
	h := startProxy(t, options{})
	h.Start("a", h.write("a.pl", sleepScript), nil)
	a := h.Started("a")
	h.CloseCommands()
	if code := h.WaitExit(); code != 0 {
		t.Errorf("proxy exit code %d, want 0", code)
	}
	if proctest.Alive(a) {
		t.Error("the service outlived the proxy")
	}
	if ws := h.Stopped("a", a); ws != waitTERM {
		t.Errorf("exit_status %d", ws)
	}
}

// A service that ignores TERM is KILLed after the grace period.
func TestShutdownKillsStubbornServices(t *testing.T) {
	t.Parallel()
	h := startProxy(t, options{})
	h.Start("stubborn", h.write("stubborn.pl", `$SIG{TERM} = 'IGNORE'; print "ready\n"; sleep 1 while 1;`), nil)
	pid := h.Started("stubborn")
	h.WaitLog("out:stubborn:ready")
	t0 := time.Now()
	h.Signal(syscall.SIGTERM)
	if code := h.WaitExit(); code != 0 {
		t.Errorf("proxy exit code %d", code)
	}
	if d := time.Since(t0); d < 1500*time.Millisecond || d > 3*time.Second {
		t.Errorf("shutdown took %v, want the 2 s grace and less than cfkd's 3 s", d)
	}
	if proctest.Alive(pid) {
		t.Error("stubborn service outlived the proxy")
	}
	if ws := h.Stopped("stubborn", pid); ws != waitKILL {
		t.Errorf("exit_status %d, want %d", ws, waitKILL)
	}
}

// A service that exits while another keeps the proxy busy, many times:
// every exit is reported once, with the right pid.
func TestManyExits(t *testing.T) {
	t.Parallel()
	h := startProxy(t, options{})
	svc := h.write("quick.pl", "exit($ARGV[0]);\n")
	const n = 50
	for i := 0; i < n; i++ {
		h.Start(fmt.Sprintf("q%d", i), []string{svc, strconv.Itoa(i % 7)}, nil)
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("q%d", i)
		if ws := h.Stopped(name, h.Started(name)); ws != (i%7)<<8 {
			t.Errorf("%s: exit_status %d, want %d", name, ws, (i%7)<<8)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if got := len(h.Statuses()); got != 2*n {
		t.Errorf("%d statuses, want %d", got, 2*n)
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	perl := testenv.RequireTool(t, "perl")
	out, err := exec.Command(perl, proxyScript, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--preload FILE") {
		t.Errorf("--help: %v\n%s", err, out)
	}
	out, err = exec.Command(perl, proxyScript).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "--preload FILE is required") {
		t.Errorf("no --preload: %v\n%s", err, out)
	}
	bad := t.TempDir() + "/bad.pl"
	os.WriteFile(bad, []byte("die qq{cannot load\\n};\n"), 0o644)
	cmd := exec.Command(perl, proxyScript, "--preload", bad)
	cmd.Env = append(os.Environ(), "_CFK_COMMAND_FD=0", "_CFK_STATUS_FD=1", "_CFK_LOG_FD=2")
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "cannot preload "+bad+": cannot load") {
		t.Errorf("failing preload: %v\n%s", err, out)
	}
}

// childOf returns a child of pid, or 0.
func childOf(pid int) int {
	if kids := proctest.Children(pid); len(kids) > 0 {
		return kids[0]
	}
	return 0
}
