// Package examples holds the demo, the example workers and the end-to-end
// tests: real traffic from wrk, through real front ends (nginx, Perlbal),
// to real programs (the Go workers, plackup's FastCGI server, gunicorn)
// that take their listening socket from cfkd.
package examples

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/controlfreak-go/cfk/console"
)

// The binaries under test, built once by TestMain.
var bin struct {
	cfkd, cfkctl, worker, activation string
}

// loadDuration is how long a plain load test runs; loadMargin is how long
// the load runs before the first and after the last operation of the
// restart test, so that every operation happens under load.
const (
	loadDuration = 3 * time.Second
	loadMargin   = 500 * time.Millisecond
	startwait    = "0.5" // startwait_secs of the pools: running after 0.5 s
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cfk-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.cfkd = filepath.Join(dir, "cfkd")
	bin.cfkctl = filepath.Join(dir, "cfkctl")
	bin.worker = filepath.Join(dir, "worker")
	bin.activation = filepath.Join(dir, "activation")
	// cfkd is built with the race detector, as its own tests do: it is not
	// on the requests' path, but these tests drive its socket handoff,
	// restarts and respawns harder than any other. The workers are built
	// plain, to keep the load realistic; so is cfkctl, a short-lived client.
	builds := [][]string{
		{"build", "-race", "-o", bin.cfkd, "../cmd/cfkd"},
		{"build", "-o", bin.cfkctl, "../cmd/cfkctl"},
		{"build", "-o", bin.worker, "./worker"},
		{"build", "-o", bin.activation, "./activation"},
	}
	for _, args := range builds {
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go %s: %v\n%s", strings.Join(args, " "), err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// jsonCmd is a cmd= value that cfkd execs as is, without a shell, so the
// service's pid is the program's own.
func jsonCmd(argv ...string) string {
	b, err := json.Marshal(argv)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// pool declares n services NAME1..NAMEn running cmd, each taking a socket
// the way attach says (`sockets=web`, `tie_stdin_to=fcgi`), and the names.
func pool(prefix string, n int, cmd, attach string) (string, []string) {
	var b strings.Builder
	var names []string
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		names = append(names, name)
		fmt.Fprintf(&b, "service %s cmd=%s\n", name, cmd)
		fmt.Fprintf(&b, "service %s %s\n", name, attach)
		fmt.Fprintf(&b, "service %s startwait_secs=%s\n", name, startwait)
		fmt.Fprintf(&b, "service %s tags=pool\n", name)
	}
	return b.String(), names
}

// tcpSocket declares a TCP socket on loopback, any free port.
func tcpSocket(name string) string {
	return fmt.Sprintf("socket %s host=127.0.0.1\nsocket %s service=0\n", name, name)
}

// startNginx runs nginx in the foreground on a free loopback port, with
// everything it writes (pid, logs, temp files) in a temp dir. upstream is
// http-level config (an upstream block or nothing); location is the body
// of `location /`. It returns nginx's URL once nginx answers 200.
func startNginx(t *testing.T, upstream, location string) string {
	t.Helper()
	nginx := requireTool(t, "nginx")
	dir := t.TempDir()
	port := freePort(t)
	// As root, nginx's workers would run as nobody, who may not enter the
	// 0700 temp dirs holding unix sockets; keep them root, as the master.
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	conf := fmt.Sprintf(`
%[1]s
worker_processes 2;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path %[2]s/client_body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	%[3]s
	server {
		listen 127.0.0.1:%[4]d;
		location / {
			%[5]s
		}
	}
}
`, user, dir, upstream, port, location)
	path := writeFile(t, filepath.Join(dir, "nginx.conf"), conf)
	p := startProc(t, dir, "nginx", nil, nginx, "-p", dir, "-e", filepath.Join(dir, "error.log"),
		"-c", path, "-g", "daemon off;")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- nginx error.log:\n%s", tail(filepath.Join(dir, "error.log")))
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	waitHTTP(t, p, url)
	return url
}

// TestNginxFourWorkers: nginx proxies to one upstream address, cfkd's
// socket, and the kernel spreads nginx's connections over the four workers
// that share it. Every worker serves; nothing fails.
func TestNginxFourWorkers(t *testing.T) {
	requireTool(t, "nginx")
	requireTool(t, "wrk")
	services, names := pool("w", 4, bin.worker, "sockets=web")
	d := startCfkd(t, tcpSocket("web")+services+"command start tag pool\n", nil)
	pids := d.waitRunning(names...)
	addr := d.tcpAddr("web")

	url := startNginx(t,
		"upstream cfkd { server "+addr+"; }",
		"proxy_pass http://cfkd;")
	r := runWrk(t, url, loadDuration)
	requireClean(t, r)
	requireEveryPid(t, r, pids)
}

// TestPerlbalPool is the original's "web nodes behind a light proxy":
// Perlbal's reverse proxy with a pool whose single node is cfkd's socket,
// behind which four workers accept.
func TestPerlbalPool(t *testing.T) {
	perlbal := requireTool(t, "perlbal")
	requireTool(t, "wrk")
	services, names := pool("w", 4, bin.worker, "sockets=web")
	d := startCfkd(t, tcpSocket("web")+services+"command start tag pool\n", nil)
	pids := d.waitRunning(names...)
	addr := d.tcpAddr("web")

	dir := t.TempDir()
	front := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	conf := writeFile(t, filepath.Join(dir, "perlbal.conf"), fmt.Sprintf(`
CREATE POOL cfkd
  POOL cfkd ADD %s

CREATE SERVICE web
  SET role            = reverse_proxy
  SET listen          = %s
  SET pool            = cfkd
  SET persist_client  = on
  SET persist_backend = off
  SET verify_backend  = off
ENABLE web
`, addr, front))
	p := startProc(t, dir, "perlbal", nil, perlbal, "--config", conf)
	url := "http://" + front + "/"
	waitHTTP(t, p, url)

	r := runWrk(t, url, loadDuration)
	requireClean(t, r)
	requireEveryPid(t, r, pids)
}

// TestPlackFCGIBehindNginx is the original's headline setup: FastCGI
// servers that find their listening socket on stdin (`tie_stdin_to`),
// here plackup's FCGI handler, with nginx's fastcgi_pass in front. The
// socket is a unix one in a temp dir.
func TestPlackFCGIBehindNginx(t *testing.T) {
	plackup := requireTool(t, "plackup")
	requirePerlModule(t, "FCGI")
	requireTool(t, "nginx")
	requireTool(t, "wrk")
	dir := t.TempDir()
	app := writeFile(t, filepath.Join(dir, "app.psgi"), `
# The tiniest PSGI app: it says which process answered.
my $app = sub {
    return [200, ['Content-Type' => 'text/plain'],
        ["hello from plack $ENV{CONTROL_FREAK_SERVICE} pid $$\n"]];
};
`)
	sock := filepath.Join(dir, "fcgi.sock")
	// Plack::Handler::FCGI serves the socket on stdin when `-S STDIN` (it
	// checks that before any --listen). plackup always passes a default
	// listen address, which would make the handler load FCGI::ProcManager
	// and fork; --manager= (empty) keeps it one process that accepts on
	// fd 0, as each FastCGI server under the original did. -E deployment
	// drops the development middlewares (an access log line per request).
	cmd := jsonCmd(plackup, "-s", "FCGI", "-E", "deployment", "--manager=", app)
	services, names := pool("p", 4, cmd, "tie_stdin_to=fcgi")
	d := startCfkd(t, "socket fcgi host=unix/\nsocket fcgi service="+sock+"\n"+services+"command start tag pool\n", nil)
	pids := d.waitRunning(names...)
	if s := d.socket("fcgi"); s.state != "bound" || !strings.Contains(s.addr, sock) {
		t.Fatalf("fcgi socket: %+v", s)
	}

	url := startNginx(t, "", fmt.Sprintf(`
			fastcgi_pass unix:%s;
			fastcgi_param REQUEST_METHOD  $request_method;
			fastcgi_param REQUEST_URI     $request_uri;
			fastcgi_param QUERY_STRING    $query_string;
			fastcgi_param SCRIPT_NAME     "";
			fastcgi_param PATH_INFO       $uri;
			fastcgi_param SERVER_NAME     $host;
			fastcgi_param SERVER_PORT     $server_port;
			fastcgi_param SERVER_PROTOCOL $server_protocol;
			fastcgi_param REMOTE_ADDR     $remote_addr;
			fastcgi_param CONTENT_TYPE    $content_type;
			fastcgi_param CONTENT_LENGTH  $content_length;`, sock))
	r := runWrk(t, url, loadDuration)
	requireClean(t, r)
	requireEveryPid(t, r, pids)
}

// TestGunicornListenFds: gunicorn, unmodified, finds cfkd's socket by
// itself (it reads LISTEN_FDS when LISTEN_PID is its pid) and is never
// told an address: without the handoff it would bind 127.0.0.1:8000 and
// this test would see no answer. wrk goes straight to cfkd's socket.
func TestGunicornListenFds(t *testing.T) {
	gunicorn := requireTool(t, "gunicorn")
	requireTool(t, "wrk")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "app.py"), `
import os

def application(environ, start_response):
    body = ("hello from gunicorn %s pid %d\n" % (os.environ.get("CONTROL_FREAK_SERVICE", "?"), os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`)
	const n = 3
	cmd := jsonCmd(gunicorn, "--workers", "1", "--chdir", dir, "app:application")
	services, names := pool("g", n, cmd, "sockets=web")
	// gunicorn says READY=1 on NOTIFY_SOCKET once its arbiter is up:
	// with ready=notify that, not a timer, makes it running.
	for _, name := range names {
		services += fmt.Sprintf("service %s ready=notify\nservice %s startwait_secs=30\n", name, name)
	}
	d := startCfkd(t, tcpSocket("web")+services+"command start tag pool\n", nil)
	arbiters := d.waitRunning(names...)
	for _, name := range names {
		line := d.must("command status service " + name)[0]
		if f := strings.Split(line, "\t"); len(f) < 9 || f[8] != "Gunicorn arbiter booted" {
			t.Errorf("%s: gunicorn's STATUS= did not reach cfkd: %q", name, line)
		}
	}
	addr := d.tcpAddr("web")

	// Each gunicorn is an arbiter that forks its worker; the worker
	// answers. Wait until the n workers answer, then load them.
	c := httpClient("tcp", addr)
	pidsAnswering(t, c, fmt.Sprintf("%d gunicorn workers answering", n), func(seen map[int]bool) bool {
		return len(seen) >= n
	})
	r := runWrk(t, "http://"+addr+"/", loadDuration)
	requireClean(t, r)
	if len(r.pids) != n {
		t.Fatalf("%d gunicorn workers answered, want %d: %v", len(r.pids), n, r)
	}
	// Every answering pid is the worker of one of cfkd's services.
	parents := map[int]bool{}
	for pid := range r.pids {
		parents[ppid(pid)] = true
	}
	for i, a := range arbiters {
		if !parents[a] {
			t.Errorf("no worker of %s (gunicorn arbiter pid %d) answered: %v", names[i], a, r)
		}
	}
}

// TestGoSystemdActivation: a Go program using go-systemd's
// activation.Listeners(), which returns nothing unless LISTEN_PID is the
// caller's own pid, serves both sockets cfkd hands it as fds 3 and 4.
func TestGoSystemdActivation(t *testing.T) {
	// First the control: the same program, given a listening fd 3 with
	// LISTEN_FDS=1 but a LISTEN_PID that is not its own, refuses to serve.
	// So it serving under cfkd below proves LISTEN_PID is right.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lf, err := l.(*net.TCPListener).File()
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	ctl := exec.Command(bin.activation)
	ctl.ExtraFiles = []*os.File{lf}
	ctl.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES=web", "LISTEN_PID=1")
	out, err := ctl.CombinedOutput()
	lf.Close()
	if err == nil || !strings.Contains(string(out), "no listening socket passed") {
		t.Fatalf("activation with LISTEN_PID=1 did not refuse: %v\n%s", err, out)
	}

	services, names := pool("a", 2, bin.activation, "sockets=web,admin")
	d := startCfkd(t, tcpSocket("web")+tcpSocket("admin")+services+"command start tag pool\n", nil)
	pids := d.waitRunning(names...)
	for _, sock := range []string{"web", "admin"} {
		c := httpClient("tcp", d.tcpAddr(sock))
		pidsServing(t, c, pids)
		body, err := get(c)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(body, "via go-systemd activation, 2 sockets") {
			t.Fatalf("%s answered %q", sock, body)
		}
	}
}

// TestRestartsAndKillsUnderLoad: while wrk loads the pool, each worker in
// turn is restarted (TERM, then a new process), then SIGKILLed (cfkd
// respawns it). cfkd's guarantee is that the listening socket never
// closes: it holds the socket itself, so whatever happens to the workers,
// no connection is ever refused and none waits for a worker that is not
// coming; the accept queue is one, shared, and the next worker takes what
// the last one left in it.
//
// Two setups, and what each may strictly demand:
//
//   - direct: wrk at cfkd's socket, every request on a new connection
//     (Connection: close), so that every request is a fresh accept. During
//     the restarts nothing at all may fail: the workers stop gracefully
//     (they stop accepting, finish what they accepted), and keep-alive is
//     off so that no client races a server closing an idle connection.
//     During the SIGKILLs a killed worker takes the requests it had
//     already accepted with it, which wrk sees as read errors on those
//     connections: there are at most wrkConns of them per kill. Connect
//     errors and timeouts stay zero.
//   - nginx: the realistic setup. nginx retries an idempotent GET that a
//     dying worker dropped (proxy_next_upstream error) on the same address,
//     which another worker accepts, so the client sees nothing at all:
//     restarts and kills together, zero errors of any kind.
func TestRestartsAndKillsUnderLoad(t *testing.T) {
	requireTool(t, "wrk")
	// Two workers take the socket as fd 3, two as stdin: both ways
	// survive restarts and kills.
	fd3, names := pool("w", 2, bin.worker, "sockets=web")
	stdin, more := pool("s", 2, bin.worker, "tie_stdin_to=web")
	names = append(names, more...)
	config := tcpSocket("web") + fd3 + stdin + "command start tag pool\n"

	restartEach := func(d *cfkd) []int {
		pids := make([]int, len(names))
		for i, name := range names {
			old := d.status(name).pid
			d.must("command restart service " + name)
			pids[i] = d.waitReplaced(name, old)
		}
		return pids
	}
	killEach := func(d *cfkd) []int {
		pids := make([]int, len(names))
		for i, name := range names {
			old := d.status(name).pid
			if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			pids[i] = d.waitReplaced(name, old)
		}
		return pids
	}
	// underLoad runs op with wrk loading url, with loadMargin of load on
	// either side, and returns wrk's figures and op's new pids.
	underLoad := func(url string, op func() []int, wrkArgs ...string) (wrkResult, []int) {
		w := startWrk(t, url, time.Minute, wrkArgs...)
		time.Sleep(loadMargin) // load, not a wait for a state
		pids := op()
		time.Sleep(loadMargin)
		return w.stop(), pids
	}

	t.Run("direct", func(t *testing.T) {
		d := startCfkd(t, config, nil)
		d.waitRunning(names...)
		url := "http://" + d.tcpAddr("web") + "/"
		closeEach := []string{"-H", "Connection: close"}

		r, pids := underLoad(url, func() []int { return restartEach(d) }, closeEach...)
		requireClean(t, r)
		requireEveryPid(t, r, pids)

		r, pids = underLoad(url, func() []int { return killEach(d) }, closeEach...)
		if r.connect != 0 || r.timeout != 0 || r.non2xx != 0 {
			t.Fatalf("connections refused or unanswered while workers were killed: %v", r)
		}
		if lost := r.read + r.write; lost > wrkConns*len(names) {
			t.Fatalf("%d requests lost to %d kills, more than the %d connections wrk holds per kill: %v",
				lost, len(names), wrkConns, r)
		}
		requireEveryPid(t, r, pids)
		if d.socket("web").state != "bound" {
			t.Fatalf("socket: %+v", d.socket("web"))
		}
	})

	t.Run("nginx", func(t *testing.T) {
		requireTool(t, "nginx")
		d := startCfkd(t, config, nil)
		d.waitRunning(names...)
		addr := d.tcpAddr("web")
		// One address, listed once per worker: nginx retries on the "next"
		// server, and only a listed server can be next. max_fails=0 keeps
		// nginx from marking the address down after a dropped request.
		var upstream strings.Builder
		upstream.WriteString("upstream cfkd {\n")
		for range names {
			fmt.Fprintf(&upstream, "\t\tserver %s max_fails=0;\n", addr)
		}
		upstream.WriteString("\t}")
		url := startNginx(t, upstream.String(), `
			proxy_pass http://cfkd;
			proxy_next_upstream error timeout;`)

		r, pids := underLoad(url, func() []int {
			restartEach(d)
			return killEach(d)
		})
		requireClean(t, r)
		requireEveryPid(t, r, pids)
	})
}

// TestSystemdSocketActivate: cfkd started by systemd-socket-activate gets
// the socket as fd 3 named "web", and its `socket web` declaration adopts
// it instead of binding what it declares; the services get it as from any
// socket. The declared address is deliberately another one: what cfkd
// serves is the inherited socket's. Over TCP, cfkd runs the config shipped
// in systemd/cfkd.conf.
//
// systemd-socket-activate, like a .socket unit, starts cfkd on the first
// connection. That connection waits in the socket's queue while cfkd
// starts, and a worker answers it: nothing is lost across the handoff.
func TestSystemdSocketActivate(t *testing.T) {
	activate := requireTool(t, "systemd-socket-activate")

	// run starts cfkd under systemd-socket-activate listening on listen,
	// makes the first connection, checks the socket is adopted and every
	// worker serves, and stops cfkd.
	run := func(t *testing.T, config string, names []string, network, listen string) {
		d := launchCfkd(t, config, nil, activate, "-l", listen, "--fdname=web")
		var first net.Conn
		waitFor(t, startTimeout, "systemd-socket-activate listening on "+listen, func() bool {
			if d.p.exited() {
				t.Fatalf("systemd-socket-activate exited: %v\n%s", d.p.err, tail(d.p.log))
			}
			c, err := net.Dial(network, listen)
			if err != nil {
				return false
			}
			first = c
			return true
		})
		defer first.Close()
		if _, err := first.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		d.waitConsole()
		pids := d.waitRunning(names...)

		_ = first.SetReadDeadline(time.Now().Add(startTimeout))
		answer, err := io.ReadAll(first)
		if err != nil || !strings.HasPrefix(string(answer), "HTTP/1.0 200 OK") || !bodyPid.Match(answer) {
			t.Fatalf("the connection that started cfkd got %q, %v", answer, err)
		}
		s := d.socket("web")
		if s.state != "adopted" || !strings.Contains(s.addr, listen) {
			t.Fatalf("socket web is %+v, want adopted on %s", s, listen)
		}
		pidsServing(t, httpClient(network, listen), pids)
		d.stop()
	}

	t.Run("tcp", func(t *testing.T) {
		shipped, err := os.ReadFile(filepath.Join("systemd", "cfkd.conf"))
		if err != nil {
			t.Fatal(err)
		}
		config := strings.ReplaceAll(string(shipped), "/usr/local/bin/cfk-worker", bin.worker)
		names := []string{"web1", "web2", "web3", "web4"}
		run(t, config, names, "tcp", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	})

	t.Run("unix", func(t *testing.T) {
		dir := t.TempDir()
		listen := filepath.Join(dir, "web.sock")
		declared := filepath.Join(dir, "declared.sock")
		fd3, names := pool("w", 1, bin.worker, "sockets=web")
		stdin, more := pool("s", 1, bin.worker, "tie_stdin_to=web")
		config := "socket web host=unix/\nsocket web service=" + declared + "\n" +
			fd3 + stdin + "command start tag pool\n"
		run(t, config, append(names, more...), "unix", listen)
		if _, err := os.Stat(declared); err == nil {
			t.Errorf("cfkd bound the declared %s as well", declared)
		}
		// The path belongs to whoever made the socket (systemd), not cfkd.
		if _, err := os.Stat(listen); err != nil {
			t.Errorf("cfkd removed the adopted socket's path: %v", err)
		}
	})
}

// TestSystemdSocketActivateSameName: systemd gives every socket of one
// .socket unit the same name (two ListenStream= lines, say IPv4 and IPv6,
// are two fds named "web"). cfkd must then serve both, or refuse to start;
// what it must not do is keep one open and unserved, where connections are
// accepted by the kernel and then wait forever.
func TestSystemdSocketActivateSameName(t *testing.T) {
	activate := requireTool(t, "systemd-socket-activate")
	a := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	b := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	fd3, names := pool("w", 2, bin.worker, "sockets=web")
	d := launchCfkd(t, tcpSocket("web")+fd3+"command start tag pool\n", nil,
		activate, "-l", a, "-l", b, "--fdname=web:web")
	// The first connection starts cfkd.
	waitFor(t, startTimeout, "systemd-socket-activate listening", func() bool {
		c, err := net.Dial("tcp", b)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	var up bool
	waitFor(t, startTimeout, "cfkd serving or gone", func() bool {
		if d.p.exited() {
			return true
		}
		c, err := console.Dial(d.addr, consoleTimeout)
		if err != nil {
			return false
		}
		d.c, up = c, true
		return true
	})
	if !up {
		if d.p.err == nil {
			t.Fatalf("cfkd exited 0 without serving:\n%s", tail(d.p.log))
		}
		t.Logf("cfkd refused two sockets named web: %v\n%s", d.p.err, tail(d.p.log))
		return
	}
	d.waitRunning(names...)
	for _, addr := range []string{a, b} {
		if _, err := get(httpClient("tcp", addr)); err != nil {
			t.Errorf("%s, one of two inherited sockets named web: %v (sockets: %q)",
				addr, err, d.must("command sockets"))
		}
	}
}

// TestSystemdUnits: systemd parses the shipped units without a warning.
func TestSystemdUnits(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"cfkd.socket", "cfkd.service"} {
		b, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		// verify checks that ExecStart's program exists.
		text := strings.ReplaceAll(string(b), "/usr/local/bin/cfkd", bin.cfkd)
		units = append(units, writeFile(t, filepath.Join(dir, name), text))
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestNotifyReady: cfkd speaks sd_notify to NOTIFY_SOCKET as a Type=notify
// service must: READY=1 with a STATUS= once it serves, WATCHDOG=1 pings
// when WATCHDOG_USEC asks for them, STOPPING=1 on TERM. Its services never
// see the service manager's NOTIFY_SOCKET or WATCHDOG_USEC (cfkd may give
// them a NOTIFY_SOCKET of its own), so they cannot speak for cfkd's unit.
func TestNotifyReady(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	msgs := make(chan string, 100)
	go func() {
		defer close(msgs)
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	// expect waits for a datagram holding every one of want.
	expect := func(want ...string) string {
		t.Helper()
		deadline := time.After(startTimeout)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("notify socket closed waiting for %q", want)
				}
				all := true
				for _, w := range want {
					all = all && strings.Contains(m, w)
				}
				if all {
					return m
				}
			case <-deadline:
				t.Fatalf("no %q on NOTIFY_SOCKET within %v", want, startTimeout)
			}
		}
	}

	const watchdogUsec = 400000 // cfkd pings at half of it: every 200 ms
	envService := "service env cmd=env\ncommand start service env\n"
	d := startCfkd(t, envService, []string{"NOTIFY_SOCKET=" + path, "WATCHDOG_USEC=" + strconv.Itoa(watchdogUsec)})
	ready := expect("READY=1", "STATUS=")
	t.Logf("cfkd said %q", ready)
	expect("WATCHDOG=1")
	expect("WATCHDOG=1")

	log := filepath.Join(d.home, "cfkd.log")
	waitFor(t, startTimeout, "the env service's output in cfkd.log", func() bool {
		b, _ := os.ReadFile(log)
		return strings.Contains(string(b), "service.env.out - PATH=")
	})
	b, _ := os.ReadFile(log)
	for _, v := range []string{"NOTIFY_SOCKET=" + path, "WATCHDOG_USEC=" + strconv.Itoa(watchdogUsec)} {
		if strings.Contains(string(b), "service.env.out - "+v+"\n") {
			t.Errorf("a service inherited cfkd's %s", v)
		}
	}

	if err := d.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expect("STOPPING=1")
	d.waitExit()
}
