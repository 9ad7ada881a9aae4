package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

// supervisord is Supervisor 4, driven through supervisorctl (CLI) or its
// XML-RPC interface on the unix socket (API).
type supervisord struct {
	dir, conf, sock string
	n               int
	p               *benchkit.Child
	rpc             *http.Client
}

func (s *supervisord) name() string { return "supervisord" }

func (s *supervisord) version() string {
	out, err := run([]string{"supervisord", "--version"})
	if err != nil {
		return "(unknown)"
	}
	return strings.TrimSpace(out)
}

func (s *supervisord) tuning() string {
	return "`[supervisord] nodaemon=true loglevel=warn minfds=16384 minprocs=8192`; each " +
		"`[program:mNNNN] command=marker FILE autostart=false autorestart=true startsecs=0 " +
		"stopsignal=TERM stopwaitsecs=2 stdout_logfile=NONE stderr_logfile=NONE` " +
		"(startsecs=0: RUNNING at once, no start wait; autorestart=true: restart at once on any " +
		"exit; no log files). `start all` = `supervisorctl start all` / XML-RPC " +
		"`supervisor.startAllProcesses`."
}

func (s *supervisord) launch(dir string, n int, markerFile string) error {
	s.dir, s.n = dir, n
	s.conf = filepath.Join(dir, "supervisord.conf")
	s.sock = filepath.Join(dir, "supervisor.sock")
	var b strings.Builder
	fmt.Fprintf(&b, `[supervisord]
nodaemon=true
logfile=%[1]s/supervisord.log
pidfile=%[1]s/supervisord.pid
childlogdir=%[1]s
loglevel=warn
minfds=16384
minprocs=8192

[unix_http_server]
file=%[2]s

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://%[2]s
`, dir, s.sock)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `
[program:%s]
command=%s %s
autostart=false
autorestart=true
startsecs=0
stopsignal=TERM
stopwaitsecs=2
stdout_logfile=NONE
stderr_logfile=NONE
`, serviceName(i), tracked.markerExe, markerFile)
	}
	if err := os.WriteFile(s.conf, []byte(b.String()), 0o644); err != nil {
		return err
	}
	s.rpc = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", s.sock)
		},
	}}
	p, err := benchkit.Start(benchkit.Spec{Dir: dir, Log: filepath.Join(dir, "supervisord.out"), KeepManagerEnv: true}, "supervisord", "-c", s.conf)
	if err != nil {
		return err
	}
	s.p = p
	if !benchkit.WaitFor(60*time.Second, 20*time.Millisecond, func() bool {
		if !p.Running() {
			return true
		}
		out, err := s.call("supervisor.getState")
		return err == nil && strings.Contains(out, "RUNNING")
	}) || !p.Running() {
		return fmt.Errorf("supervisord did not come up (see %s/supervisord.out)", dir)
	}
	return nil
}

// call makes an XML-RPC call without parameters and returns the raw
// response; a <fault> is an error.
func (s *supervisord) call(method string) (string, error) {
	body := `<?xml version="1.0"?><methodCall><methodName>` + method +
		`</methodName><params></params></methodCall>`
	resp, err := s.rpc.Post("http://localhost/RPC2", "text/xml", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK || strings.Contains(string(b), "<fault>") {
		return string(b), fmt.Errorf("%s: HTTP %d: %.200s", method, resp.StatusCode, b)
	}
	return string(b), nil
}

func (s *supervisord) root() int { return s.p.Pid() }

func (s *supervisord) ctl(args ...string) []string {
	return append([]string{"supervisorctl", "-c", s.conf}, args...)
}

func (s *supervisord) startAll(v via) error {
	if v == viaCLI {
		_, err := run(s.ctl("start", "all"))
		return err
	}
	_, err := s.call("supervisor.startAllProcesses")
	return err
}

func (s *supervisord) downAll(v via) error {
	if v == viaCLI {
		_, err := run(s.ctl("stop", "all"))
		return err
	}
	_, err := s.call("supervisor.stopAllProcesses")
	return err
}

func (s *supervisord) status(v via) (int, error) {
	if v == viaCLI {
		// supervisorctl status exits 3 when some process is not running.
		out, err := run(s.ctl("status"), 3)
		return countLines(out), err
	}
	out, err := s.call("supervisor.getAllProcessInfo")
	return strings.Count(out, "<name>name</name>"), err
}

func (s *supervisord) stop() error {
	if s.p == nil {
		return nil
	}
	syscall.Kill(s.p.Pid(), syscall.SIGTERM)
	return s.p.Wait(60 * time.Second)
}
