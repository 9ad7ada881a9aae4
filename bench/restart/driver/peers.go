package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
	"github.com/controlfreak-go/cfk/console"
)

// A pool is n workers behind one listening socket, run by one peer, that
// the driver can restart.
type pool interface {
	// up starts the pool and returns once n workers exist.
	up(n int) error
	url() string
	// workers lists the worker processes now (one scan of /proc).
	workers() []int
	// restart issues the peer's restart and returns when its command does
	// (at once for a signal). The text is whatever the command printed.
	restart() (string, error)
	down()
}

// peerCase is one row of the report: a peer and the way it restarts.
type peerCase struct {
	key   string // for CASES=
	label string
	new   func(o *options, dir string) pool
}

var cases = []peerCase{
	{"cfkd1", "cfkd, `cfkctl restart @web --rolling --batch 1`", func(o *options, dir string) pool { return &cfkdPool{o: o, dir: dir, batch: 1} }},
	{"cfkd2", "cfkd, `cfkctl restart @web --rolling --batch 2`", func(o *options, dir string) pool { return &cfkdPool{o: o, dir: dir, batch: 2} }},
	{"cfkd1o", "cfkd, `cfkctl restart @web --rolling --batch 1 --overlap`", func(o *options, dir string) pool {
		return &cfkdPool{o: o, dir: dir, batch: 1, overlap: true}
	}},
	{"cfkd2o", "cfkd, `cfkctl restart @web --rolling --batch 2 --overlap`", func(o *options, dir string) pool {
		return &cfkdPool{o: o, dir: dir, batch: 2, overlap: true}
	}},
	{"cfkdgunicorn", "cfkd, gunicorn workers (`gunicorn --workers 1` ×N on `sockets=`), `--rolling --batch 1`", func(o *options, dir string) pool {
		return &cfkdPool{o: o, dir: dir, batch: 1, gunicorn: true}
	}},
	{"supervisord", "supervisord `[fcgi-program]`, `supervisorctl restart web:*`", func(o *options, dir string) pool { return &supervisordPool{o: o, dir: dir} }},
	{"supervisord1by1", "supervisord `[fcgi-program]`, `supervisorctl restart web:web_NN` one by one", func(o *options, dir string) pool {
		return &supervisordPool{o: o, dir: dir, oneByOne: true}
	}},
	{"starman", "Server::Starter + Starman, `start_server --restart` (HUP)", func(o *options, dir string) pool { return &starterPool{o: o, dir: dir} }},
	{"gunicorn", "gunicorn, `kill -HUP` of the master", func(o *options, dir string) pool { return &gunicornPool{o: o, dir: dir} }},
}

// ---- cfkd -------------------------------------------------------------------

// cfkdPool is n services of the Go example worker on one cfkd socket
// (`sockets=web`), restarted with cfkctl's rolling restart.
type cfkdPool struct {
	o     *options
	dir   string
	batch int
	// overlap: each new worker starts beside the old one, which goes once
	// the new one is ready (--overlap).
	overlap bool
	// gunicorn: each service is `gunicorn --workers 1` with the WSGI app,
	// instead of the Go worker: a program of another language that knows
	// nothing of cfkd but systemd's LISTEN_FDS, and drains on TERM.
	gunicorn bool
	d        *benchkit.Child
	addr     string
	target   string
	cl       *console.Client
}

func (p *cfkdPool) up(n int) error {
	home := filepath.Join(p.dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	p.addr = "unix:" + filepath.Join(home, "sock")
	d, err := benchkit.Start(benchkit.Spec{Dir: p.dir, Log: filepath.Join(p.dir, "cfkd.out")}, p.o.cfkd, "--home", home, "-a", p.addr)
	if err != nil {
		return err
	}
	p.d = d
	if !benchkit.WaitFor(10*time.Second, 5*time.Millisecond, func() bool {
		cl, err := console.Dial(p.addr, time.Second)
		p.cl = cl
		return err == nil
	}) {
		return fmt.Errorf("cfkd did not serve %s (see %s/cfkd.out)", p.addr, p.dir)
	}
	cmd, _ := json.Marshal([]string{p.o.worker})
	if p.gunicorn {
		if err := os.WriteFile(filepath.Join(p.dir, "app.py"), []byte(wsgiApp), 0o644); err != nil {
			return err
		}
		// gunicorn takes fd 3 when LISTEN_PID is its pid; --bind is then
		// ignored. It says READY=1 once its master has booted.
		cmd, _ = json.Marshal([]string{p.o.gunicorn, "--workers", "1", "--chdir", p.dir, "app:application"})
	}
	lines := []string{"socket web host=127.0.0.1", "socket web service=0", "command bind web"}
	for i := 1; i <= n; i++ {
		s := fmt.Sprintf("web%03d", i)
		lines = append(lines,
			fmt.Sprintf("service %s cmd=%s", s, cmd),
			fmt.Sprintf("service %s sockets=web", s),
			fmt.Sprintf("service %s tags=web", s))
		if p.o.readyNotify || p.gunicorn {
			// The worker says READY=1 once it serves; startwait_secs is
			// then only the deadline for it.
			lines = append(lines, fmt.Sprintf("service %s ready=notify", s),
				fmt.Sprintf("service %s startwait_secs=5", s))
		} else {
			lines = append(lines, fmt.Sprintf("service %s startwait_secs=0.2", s))
		}
	}
	lines = append(lines, "command start tag web")
	for _, l := range lines {
		if _, err := p.cl.Do(l); err != nil {
			return fmt.Errorf("cfkd: %q: %w", l, err)
		}
	}
	b, err := p.cl.Do("command sockets web")
	if err != nil || len(b) == 0 {
		return fmt.Errorf("cfkd: command sockets web: %v", err)
	}
	p.target = "http://" + strings.Split(b[0], "\t")[1] + "/"
	return waitWorkers(p, n)
}

func (p *cfkdPool) url() string { return p.target }

func (p *cfkdPool) workers() []int {
	if p.gunicorn {
		// The gunicorn workers: the children of the services' masters.
		var out []int
		for _, pid := range descendants(p.d.Pid()) {
			if st, err := benchkit.ReadStat(pid); err == nil && st.PPID != p.d.Pid() {
				out = append(out, pid)
			}
		}
		return out
	}
	return withExe(descendants(p.d.Pid()), p.o.worker)
}

func (p *cfkdPool) restart() (string, error) {
	args := []string{"-a", p.addr, "restart", "@web", "--rolling", "--batch", fmt.Sprint(p.batch)}
	if p.overlap {
		args = append(args, "--overlap")
	}
	return run(p.dir, append([]string{p.o.cfkctl}, args...)...)
}

func (p *cfkdPool) down() {
	_, _ = p.cl.Do("command shutdown")
	select {
	case <-p.d.Exited():
	case <-time.After(15 * time.Second):
		p.d.Stop(syscall.SIGKILL, time.Second)
	}
}

// ---- supervisord --------------------------------------------------------------

// supervisordPool is the same Go worker as n processes of one
// [fcgi-program], supervisord's way of sharing one listening socket among
// processes: it binds the socket and gives it to each as stdin.
type supervisordPool struct {
	o        *options
	dir      string
	oneByOne bool
	d        *benchkit.Child
	conf     string
	port     int
	names    []string
}

func (p *supervisordPool) up(n int) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	p.port = port
	p.conf = filepath.Join(p.dir, "supervisord.conf")
	conf := fmt.Sprintf(`[unix_http_server]
file=%[1]s/supervisor.sock

[supervisord]
nodaemon=true
logfile=%[1]s/supervisord.log
pidfile=%[1]s/supervisord.pid
childlogdir=%[1]s
loglevel=info

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://%[1]s/supervisor.sock

[fcgi-program:web]
socket=tcp://127.0.0.1:%[2]d
command=%[3]s
process_name=%%(program_name)s_%%(process_num)02d
numprocs=%[4]d
autostart=true
autorestart=true
startsecs=0
stopsignal=TERM
stopwaitsecs=10
redirect_stderr=true
stdout_logfile=%[1]s/%%(program_name)s_%%(process_num)02d.log
`, p.dir, port, p.o.worker, n)
	if err := os.WriteFile(p.conf, []byte(conf), 0o644); err != nil {
		return err
	}
	p.names = nil
	for i := 0; i < n; i++ {
		p.names = append(p.names, fmt.Sprintf("web:web_%02d", i))
	}
	d, err := benchkit.Start(benchkit.Spec{Dir: p.dir, Log: filepath.Join(p.dir, "supervisord.out")}, "supervisord", "-c", p.conf)
	if err != nil {
		return err
	}
	p.d = d
	return waitWorkers(p, n)
}

func (p *supervisordPool) url() string { return fmt.Sprintf("http://127.0.0.1:%d/", p.port) }

func (p *supervisordPool) workers() []int { return withExe(descendants(p.d.Pid()), p.o.worker) }

func (p *supervisordPool) restart() (string, error) {
	if !p.oneByOne {
		return run(p.dir, "supervisorctl", "-c", p.conf, "restart", "web:*")
	}
	var out strings.Builder
	for _, name := range p.names {
		s, err := run(p.dir, "supervisorctl", "-c", p.conf, "restart", name)
		out.WriteString(s)
		if err != nil {
			return out.String(), err
		}
	}
	return out.String(), nil
}

func (p *supervisordPool) down() { p.d.Stop(syscall.SIGTERM, 15*time.Second) }

// ---- Server::Starter + Starman -------------------------------------------------

// starterPool is Starman's documented hot-deploy setup: start_server binds
// the socket and runs a starman master, which forks n workers; a restart
// (HUP to start_server) starts a new master and then sends the old one
// the configured signal.
type starterPool struct {
	o    *options
	dir  string
	d    *benchkit.Child
	port int
}

const psgiApp = `# The tiny PSGI app of bench/restart: its pid in every answer.
my $app = sub {
    return [200, ['Content-Type' => 'text/plain'], ["hello from starman pid $$\n"]];
};
`

func (p *starterPool) up(n int) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	p.port = port
	app := filepath.Join(p.dir, "app.psgi")
	if err := os.WriteFile(app, []byte(psgiApp), 0o644); err != nil {
		return err
	}
	d, err := benchkit.Start(benchkit.Spec{Dir: p.dir, Log: filepath.Join(p.dir, "start_server.out")}, "start_server",
		fmt.Sprintf("--port=127.0.0.1:%d", port),
		fmt.Sprintf("--interval=%d", p.o.starterInterval),
		"--signal-on-hup=QUIT", "--signal-on-term=QUIT",
		"--pid-file="+filepath.Join(p.dir, "start_server.pid"),
		"--status-file="+filepath.Join(p.dir, "start_server.status"),
		"--", "starman", "--workers", fmt.Sprint(n), "--disable-keepalive",
		"--max-requests", "1000000", app)
	if err != nil {
		return err
	}
	p.d = d
	return waitWorkers(p, n)
}

func (p *starterPool) url() string { return fmt.Sprintf("http://127.0.0.1:%d/", p.port) }

func (p *starterPool) workers() []int {
	var out []int
	for _, pid := range descendants(p.d.Pid()) {
		if strings.HasPrefix(cmdlineOf(pid), "starman worker") {
			out = append(out, pid)
		}
	}
	return out
}

func (p *starterPool) restart() (string, error) {
	// The documented wrapper: HUP to start_server, then wait until the
	// old generation has exited (read from the status file).
	return run(p.dir, "start_server", "--restart",
		"--pid-file="+filepath.Join(p.dir, "start_server.pid"),
		"--status-file="+filepath.Join(p.dir, "start_server.status"))
}

func (p *starterPool) down() { p.d.Stop(syscall.SIGTERM, 15*time.Second) }

// ---- gunicorn --------------------------------------------------------------------

// gunicornPool is Debian's gunicorn with n sync workers and a tiny WSGI app;
// its restart is HUP to the master, which starts n new workers and
// gracefully stops the old ones.
type gunicornPool struct {
	o    *options
	dir  string
	d    *benchkit.Child
	port int
}

const wsgiApp = `# The tiny WSGI app of bench/restart: its pid in every answer.
import os


def application(environ, start_response):
    body = ("hello from gunicorn pid %d\n" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`

func (p *gunicornPool) up(n int) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	p.port = port
	if err := os.WriteFile(filepath.Join(p.dir, "app.py"), []byte(wsgiApp), 0o644); err != nil {
		return err
	}
	d, err := benchkit.Start(benchkit.Spec{Dir: p.dir, Log: filepath.Join(p.dir, "gunicorn.out")}, p.o.gunicorn,
		"--workers", fmt.Sprint(n), "--bind", fmt.Sprintf("127.0.0.1:%d", port),
		"--pid", filepath.Join(p.dir, "gunicorn.pid"), "--chdir", p.dir, "app:application")
	if err != nil {
		return err
	}
	p.d = d
	return waitWorkers(p, n)
}

func (p *gunicornPool) url() string { return fmt.Sprintf("http://127.0.0.1:%d/", p.port) }

// workers are the master's children; gunicorn names none of its processes.
func (p *gunicornPool) workers() []int { return descendants(p.d.Pid()) }

func (p *gunicornPool) restart() (string, error) {
	return "", syscall.Kill(p.d.Pid(), syscall.SIGHUP)
}

func (p *gunicornPool) down() { p.d.Stop(syscall.SIGTERM, 35*time.Second) }

// ---- shared ----------------------------------------------------------------------

// withExe keeps the pids whose executable is exe: a child still in
// cfkd's exec step runs /bin/sh, not yet the worker.
func withExe(pids []int, exe string) []int {
	var out []int
	for _, pid := range pids {
		if benchkit.ExeOf(pid) == exe {
			out = append(out, pid)
		}
	}
	return out
}

// waitWorkers waits until the pool has exactly n workers and answers.
func waitWorkers(p pool, n int) error {
	var got []int
	if !benchkit.WaitFor(20*time.Second, 20*time.Millisecond, func() bool {
		got = p.workers()
		return len(got) == n
	}) {
		return fmt.Errorf("%d workers instead of %d after 20 s", len(got), n)
	}
	if _, err := probeOnce(p.url()); err != nil && !benchkit.WaitFor(10*time.Second, 50*time.Millisecond, func() bool {
		_, err := probeOnce(p.url())
		return err == nil
	}) {
		return fmt.Errorf("the pool does not answer on %s: %w", p.url(), err)
	}
	return nil
}

var rollDone = regexp.MustCompile(`restarted \d+ services in ([0-9.]+)s`)
