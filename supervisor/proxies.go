package supervisor

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/controlfreak-go/cfk/eventlog"
	"github.com/controlfreak-go/cfk/proxy"
)

// proxyKillWait is how long a proxy gets to exit after TERM before KILL
// (the original waited 3 s before giving up on it).
const proxyKillWait = 3 * time.Second

// The fds a proxy finds its pipes on; its sockets follow.
const (
	proxyCommandFd = 3
	proxyStatusFd  = 4
	proxyLogFd     = 5
)

// proxyEntry is a declared proxy and, while it runs, its process.
type proxyEntry struct {
	name string
	cfg  proxy.Config

	pid      int
	gen      uint64 // which run of the proxy an event belongs to
	conn     *proxy.Conn
	sockets  map[string]bool // the sockets it was given at start
	stopping bool
	heard    bool // it has said something: its preload is done
	// abandoned counts, per service, starts cfkd gave up on whose
	// `started` has not come yet: commands and statuses are ordered, so the
	// next `started` for that name is the abandoned one, not the retry's.
	abandoned map[string]int
	started   time.Time   // when this run of the proxy began
	wantDown  bool        // proxydown: stop it once its services are down
	kill      func() bool // the KILL timer after a stop

	// pids lets the log reader name the pid of a service's log lines.
	pids sync.Map // service name -> pid
	// logs sends a service's lines to its own log_file (proxiedLogFile).
	logs sync.Map // service name -> *proxiedLog
}

// proxiedLog is the log file a proxied service's lines go to.
type proxiedLog struct {
	spec LogFile
	f    *fileLog
}

// proxiedLogFile points p's log reader at svc's log_file, or back at
// cfkd's log, as svc's configuration now says. The file is held while the
// proxy runs (lines may come after the service has stopped).
func (s *Supervisor) proxiedLogFile(p *proxyEntry, svc *service) {
	spec := s.logFile(svc)
	if v, ok := p.logs.Load(svc.name); ok {
		cur := v.(*proxiedLog)
		if cur.spec == spec {
			return
		}
		p.logs.Delete(svc.name)
		s.out.closeLog(cur.f)
	}
	if f := s.out.openLog(spec, svc.name); f != nil {
		p.logs.Store(svc.name, &proxiedLog{spec: spec, f: f})
	}
}

// dropProxiedLogs lets go of the files p's services wrote to.
func (s *Supervisor) dropProxiedLogs(p *proxyEntry) {
	p.logs.Range(func(k, v any) bool {
		p.logs.Delete(k)
		s.out.closeLog(v.(*proxiedLog).f)
		return true
	})
}

func (p *proxyEntry) up() bool { return p.pid != 0 }

// Events from a running proxy.
type proxyStatusEvent struct {
	name string
	gen  uint64
	st   proxy.Status
}

type proxyKillEvent struct {
	name string
	gen  uint64
}

// proxyHeardEvent is the first line a run of a proxy writes: the original
// proxy and ours log one as soon as their preload is done.
type proxyHeardEvent struct {
	name string
	gen  uint64
}

// minReportWait is the least time a proxy gets to report a start, even
// with a shorter startwait_secs (0 included): it has to fork first.
const minReportWait = 2 * time.Second

// maxPreload bounds how long a proxy may preload before the starts that
// wait for it count as failed.
const maxPreload = 5 * time.Minute

// declareProxy sets a proxy attribute, declaring the proxy if new.
func (s *Supervisor) declareProxy(name, attr, value string) error {
	p := s.proxies[name]
	if p == nil {
		var cfg proxy.Config
		if err := cfg.Set(attr, value); err != nil {
			return err
		}
		s.proxies[name] = &proxyEntry{name: name, cfg: cfg}
		return nil
	}
	return p.cfg.Set(attr, value)
}

// declareProxyService sets a service attribute and puts the service
// under the proxy (`proxy P service S ATTR=VALUE`).
func (s *Supervisor) declareProxyService(pname, sname, attr, value string) error {
	if err := s.declareService(sname, attr, value); err != nil {
		return err
	}
	if s.proxies[pname] == nil {
		s.proxies[pname] = &proxyEntry{name: pname}
	}
	s.services[sname].proxy = pname
	return nil
}

// proxyField is the proxy column of status and desc: the name, with `!`
// while the proxy is down.
func (s *Supervisor) proxyField(svc *service, withState bool) string {
	if svc.proxy == "" {
		return ""
	}
	if p := s.proxies[svc.proxy]; withState && (p == nil || !p.up()) {
		return svc.proxy + "!"
	}
	return svc.proxy
}

// startProxy runs a proxy's command with its three pipes and every bound
// socket.
func (s *Supervisor) startProxy(p *proxyEntry) error {
	if p.up() {
		return nil
	}
	if s.shuttingDown {
		return ErrShuttingDown
	}
	if !p.cfg.HasCmd() {
		return fmt.Errorf("Proxy '%s' can't run: no command", p.name)
	}
	argv := commandArgv(p.cfg.Cmd, p.cfg.CmdArgv)
	env := append([]string(nil), s.env...)
	for _, kv := range p.cfg.Env {
		env = append(env, kv[0]+"="+kv[1])
	}
	env = append(env,
		proxy.EnvCommandFd+"="+strconv.Itoa(proxyCommandFd),
		proxy.EnvStatusFd+"="+strconv.Itoa(proxyStatusFd),
		proxy.EnvLogFd+"="+strconv.Itoa(proxyLogFd))
	path, err := lookPath(argv[0], env)
	if err != nil {
		return fmt.Errorf("Proxy '%s' can't run %s: %v", p.name, argv[0], err)
	}

	// Three pipes: commands to the proxy, statuses and logs back.
	var pipes [3][2]int
	for i := range pipes {
		if err := unix.Pipe2(pipes[i][:], unix.O_CLOEXEC); err != nil {
			for j := 0; j < i; j++ {
				unix.Close(pipes[j][0])
				unix.Close(pipes[j][1])
			}
			return fmt.Errorf("pipe: %w", err)
		}
	}
	cmdR, cmdW := pipes[0][0], pipes[0][1]
	statusR, statusW := pipes[1][0], pipes[1][1]
	logR, logW := pipes[2][0], pipes[2][1]
	var out, errp [2]int
	_ = unix.Pipe2(out[:], unix.O_CLOEXEC)
	_ = unix.Pipe2(errp[:], unix.O_CLOEXEC)

	files := []uintptr{uintptr(s.run.(*forkRunner).devNull), uintptr(out[1]), uintptr(errp[1]),
		uintptr(cmdR), uintptr(statusW), uintptr(logW)}
	socks := map[string]bool{}
	names := make([]string, 0, len(s.sockets))
	for name, e := range s.sockets {
		if e.sock != nil {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		env = append(env, proxy.EnvSockPrefix+name+"="+strconv.Itoa(len(files)))
		files = append(files, uintptr(s.sockets[name].sock.Fd()))
		socks[name] = true
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env: dedupEnv(env), Files: files, Sys: &syscall.SysProcAttr{Setsid: true},
	})
	for _, fd := range []int{cmdR, statusW, logW, out[1], errp[1]} {
		unix.Close(fd)
	}
	if err != nil {
		for _, fd := range []int{cmdW, statusR, logR, out[0], errp[0]} {
			unix.Close(fd)
		}
		return fmt.Errorf("Proxy '%s' can't run %s: %v", p.name, argv[0], err)
	}
	s.out.addCategory(out[0], "proxy."+p.name, stdout, pid, LogFile{})
	s.out.addCategory(errp[0], "proxy."+p.name, stderr, pid, LogFile{})

	p.gen++
	p.pid, p.sockets, p.stopping, p.wantDown = pid, socks, false, false
	p.heard, p.started = false, time.Now()
	s.proxyByPid[pid] = p
	s.openProxyConn(p, cmdW, statusR, logR)
	s.logf(eventlog.Info, "proxy '%s' started, pid %d", p.name, pid)
	return nil
}

// openProxyConn serves a running proxy's pipes. They are made
// non-blocking so that Go's poller reads them and an in-place upgrade can
// stop the readers without closing the pipes.
func (s *Supervisor) openProxyConn(p *proxyEntry, cmdW, statusR, logR int) {
	for _, fd := range []int{cmdW, statusR, logR} {
		unix.CloseOnExec(fd)
		_ = unix.SetNonblock(fd, true)
	}
	gen, name, pid := p.gen, p.name, p.pid
	var heard sync.Once
	p.conn = proxy.Open(fileOf(cmdW, "proxy:"+name+":command"), fileOf(statusR, "proxy:"+name+":status"), fileOf(logR, "proxy:"+name+":log"), proxy.Handlers{
		Status: func(st proxy.Status) { s.send(proxyStatusEvent{name, gen, st}) },
		Log: func(l proxy.LogLine) {
			heard.Do(func() { s.send(proxyHeardEvent{name, gen}) })
			s.proxyLog(p, l)
		},
		Bad: func(err error) {
			s.log.Log(eventlog.Error, "proxy."+name, pid, "bad input from proxy: "+err.Error())
		},
	})
}

// proxyLog logs a line a proxy relayed: a service's output, or its own.
// It runs on the proxy's log reader goroutine: it reads only p.pids.
func (s *Supervisor) proxyLog(p *proxyEntry, l proxy.LogLine) {
	l.Msg = strings.TrimSuffix(l.Msg, "\r") // as for lines read from pipes
	level, stream := eventlog.Info, ".out"
	if l.Stderr {
		level, stream = eventlog.Error, ".err"
	}
	if l.Service == "" {
		s.log.Write(level, "proxy."+p.name+stream, 0, l.Msg)
		return
	}
	// A service is in pids (pid 0 until its `started` is handled) from
	// the moment cfkd asks for it, so early lines keep their name.
	pid, ok := p.pids.Load(l.Service)
	if !ok {
		s.log.Write(eventlog.Error, "proxy."+p.name+".err", 0,
			fmt.Sprintf("log line for unknown service '%s': %s", l.Service, l.Msg))
		return
	}
	if v, ok := p.logs.Load(l.Service); ok {
		v.(*proxiedLog).f.log.Write(level, "service."+l.Service+stream, pid.(int), l.Msg)
		return
	}
	s.log.Write(level, "service."+l.Service+stream, pid.(int), l.Msg)
}

// stopProxy closes a proxy's command pipe and TERMs it; KILL follows if
// it has not exited after proxyKillWait.
func (s *Supervisor) stopProxy(p *proxyEntry, why string) {
	if !p.up() || p.stopping {
		return
	}
	s.logf(eventlog.Info, "shutting down proxy '%s' (%s)", p.name, why)
	p.stopping = true
	p.conn.Close()
	if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil && err != syscall.ESRCH {
		s.logf(eventlog.Error, "cannot signal proxy '%s': %v", p.name, err)
	}
	ev := proxyKillEvent{p.name, p.gen}
	t := time.AfterFunc(proxyKillWait, func() { s.send(ev) })
	p.kill = t.Stop
}

func (s *Supervisor) onProxyKill(ev proxyKillEvent) {
	p := s.proxies[ev.name]
	if p == nil || p.gen != ev.gen || !p.up() {
		return
	}
	s.logf(eventlog.Warn, "proxy '%s' still running after %v, killing", p.name, proxyKillWait)
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
}

// onProxyExit is a proxy's death. Its services that were up fail with
// "proxy stopped", and what is left of their process groups is stopped,
// so no worker with old code keeps accepting on a shared socket. Respawn
// rules then apply (starting the proxy again when needed).
func (s *Supervisor) onProxyExit(p *proxyEntry, ws syscall.WaitStatus) {
	delete(s.proxyByPid, p.pid)
	switch {
	case ws.Exited() && ws.ExitStatus() == 0:
		s.logf(eventlog.Info, "proxy '%s' exited", p.name)
	case ws.Signaled() && ws.Signal() == syscall.SIGTERM:
		s.logf(eventlog.Info, "proxy '%s' gracefully killed", p.name)
	default:
		s.logf(eventlog.Error, "proxy '%s' abnormal termination: %s", p.name, exitReason(ws))
	}
	if p.kill != nil {
		p.kill()
		p.kill = nil
	}
	p.conn.Close()
	p.pid, p.gen, p.stopping, p.wantDown, p.sockets, p.abandoned = 0, p.gen+1, false, false, nil, nil
	p.pids.Range(func(k, _ any) bool { p.pids.Delete(k); return true })
	s.dropProxiedLogs(p)

	for _, svc := range s.sortedServices() {
		if svc.proxy != p.name || !svc.isUp() {
			continue
		}
		if svc.pid != 0 {
			delete(s.byPid, svc.pid)
			if svc.pgid != 0 {
				_ = s.run.kill(-svc.pgid, syscall.SIGTERM)
				s.lingerGroup(svc.pgid, svc.cfg.StopWait)
			} else {
				_ = s.run.kill(svc.pid, syscall.SIGTERM)
			}
		}
		s.disarm(svc, startTimer)
		s.disarm(svc, stopTimer)
		s.logf(eventlog.Error, "'%s' has stopped: proxy stopped", svc.name)
		svc.runningCmd = ""
		svc.failReason = "proxy stopped"
		s.failed(svc)
	}
	// Workers whose start the proxy never got to report are not known by
	// pid; the kernel has made them cfkd's children (it is a subreaper).
	s.stopStrayChildren(p.name)
	s.checkShutdown()
}

// stopStrayChildren stops every child of cfkd that is neither a service's
// process nor a proxy: after a proxy dies, those are its orphaned
// workers, and a worker with old code must not go on accepting on a
// shared socket.
func (s *Supervisor) stopStrayChildren(why string) {
	self := os.Getpid()
	for pid, ppid := range childrenOf() {
		if ppid != self || s.byPid[pid] != nil || s.proxyByPid[pid] != nil {
			continue
		}
		target := pid
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
			target = -pid // it leads its own group: take the group
		}
		s.logf(eventlog.Warn, "stopping pid %d, left behind by proxy '%s'", pid, why)
		_ = s.run.kill(target, syscall.SIGTERM)
		if target < 0 {
			s.lingerGroup(pid, DefaultStopWait)
		} else {
			pid := pid
			time.AfterFunc(DefaultStopWait, func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
		}
	}
}

// childrenOf maps every process to its parent, from /proc.
func childrenOf() map[int]int {
	out := map[int]int{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		out[pid] = ppid
	}
	return out
}

// onProxyStatus is a status line from a proxy.
func (s *Supervisor) onProxyStatus(ev proxyStatusEvent) {
	p := s.proxies[ev.name]
	if p == nil || p.gen != ev.gen || !p.up() {
		return
	}
	p.heard = true
	st := ev.st
	svc := s.services[st.Name]
	if svc == nil || svc.proxy != p.name {
		s.logf(eventlog.Error, "proxy '%s' reports on unknown service '%s'", p.name, st.Name)
		return
	}
	if !st.Started {
		if s.byPid[st.Pid] == svc {
			s.onExit(st.Pid, st.WaitStatus)
		}
		return
	}
	if p.abandoned[svc.name] > 0 {
		p.abandoned[svc.name]--
		s.logf(eventlog.Warn, "proxy '%s' started '%s' (pid %d) after cfkd gave up on that start; it was asked to stop", p.name, svc.name, st.Pid)
		return
	}
	if svc.state != Starting && svc.state != Stopping || svc.pid != 0 {
		// A start we gave up on, or a duplicate: nobody wants it.
		s.logf(eventlog.Warn, "proxy '%s' started '%s' (pid %d) unasked; stopping it", p.name, svc.name, st.Pid)
		_ = p.conn.Send(proxy.EncodeStop(svc.name))
		return
	}
	svc.pid = st.Pid
	svc.pgid = 0
	if !svc.cfg.NoNewSession {
		svc.pgid = st.Pid
	}
	svc.runningCmd = svc.cfg.CmdText()
	s.byPid[st.Pid] = svc
	p.pids.Store(svc.name, st.Pid)
	if svc.state == Starting {
		// startwait_secs counts from the moment the process exists.
		s.arm(svc, startTimer, svc.cfg.StartWait)
	} else {
		// Asked down before its pid came: stop it now.
		_ = p.conn.Send(proxy.EncodeStop(svc.name))
	}
}

func (s *Supervisor) onProxyHeard(ev proxyHeardEvent) {
	if p := s.proxies[ev.name]; p != nil && p.gen == ev.gen {
		p.heard = true
	}
}

// stillPreloading reports whether svc's start waits on its proxy's
// preload, which startwait_secs does not count.
func (s *Supervisor) stillPreloading(svc *service) bool {
	p := s.proxies[svc.proxy]
	return p != nil && p.up() && !p.heard && time.Since(p.started) < maxPreload
}

// startProxied asks a service's proxy to start it, starting the proxy
// first when it is an auto proxy.
func (s *Supervisor) startProxied(svc *service) error {
	p := s.proxies[svc.proxy]
	if p == nil {
		return fmt.Errorf("proxy '%s' is unknown", svc.proxy)
	}
	if p.stopping {
		return fmt.Errorf("proxy '%s' is stopping", p.name)
	}
	if !p.up() {
		if p.cfg.NoAuto {
			return fmt.Errorf("Proxy is not running, not starting service '%s'", svc.name)
		}
		if err := s.startProxy(p); err != nil {
			return err
		}
	}
	for _, name := range append(svc.cfg.Sockets, svc.cfg.TieStdinTo) {
		if name != "" && !p.sockets[name] {
			return fmt.Errorf("socket '%s' was bound after proxy '%s' started: restart the proxy", name, p.name)
		}
	}
	cmd := proxy.StartCommand{
		Name:         svc.name,
		Cmd:          svc.cfg.Cmd,
		Env:          map[string]string{},
		IgnoreStdout: b2i(svc.cfg.IgnoreStdout),
		IgnoreStderr: b2i(svc.cfg.IgnoreStderr),
		NoNewSession: b2i(svc.cfg.NoNewSession),
		Sockets:      svc.cfg.Sockets,
	}
	if len(svc.cfg.CmdArgv) > 0 {
		cmd.Cmd = svc.cfg.CmdArgv
	}
	for _, kv := range svc.cfg.Env {
		cmd.Env[kv.Key] = kv.Value
	}
	for _, kv := range s.notifyEnv(svc) {
		k, v, _ := strings.Cut(kv, "=")
		cmd.Env[k] = v
	}
	if t := svc.cfg.TieStdinTo; t != "" {
		cmd.TieStdinTo = &t
	}
	if _, known := p.pids.Load(svc.name); !known {
		p.pids.Store(svc.name, 0)
	}
	s.proxiedLogFile(p, svc)
	if err := p.conn.Send(proxy.EncodeStart(cmd)); err != nil {
		return err
	}
	// The proxy has at least minReportWait to say `started`; from then on
	// startwait_secs counts as for any service.
	s.arm(svc, startTimer, max(svc.cfg.StartWait, minReportWait))
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// stopProxied asks the proxy to stop a service.
func (s *Supervisor) stopProxied(svc *service) {
	p := s.proxies[svc.proxy]
	if p == nil || !p.up() {
		return
	}
	if err := p.conn.Send(proxy.EncodeStop(svc.name)); err != nil {
		s.logf(eventlog.Error, "cannot ask proxy '%s' to stop %s: %v", p.name, svc.name, err)
		if svc.pid != 0 {
			s.signal(svc, syscall.SIGTERM)
		}
	}
}

// proxyIdle stops an auto proxy (or one asked down) none of whose
// services is up or about to retry. It runs after the event that brought
// a service down has been handled, so a service that is restarted at once
// keeps its proxy.
func (s *Supervisor) proxyIdle(name string) {
	p := s.proxies[name]
	if p == nil || !p.up() || p.cfg.NoAuto && !p.wantDown && !s.shuttingDown {
		return
	}
	for _, svc := range s.services {
		if svc.proxy == name && (svc.isUp() || svc.state == Backoff) {
			return
		}
	}
	s.stopProxy(p, "none of its services is up")
}

func (s *Supervisor) cmdProxyUp(args []string, done func([]string, error)) {
	p, err := s.proxyArg(args)
	if err != nil {
		done(nil, err)
		return
	}
	done(nil, s.startProxy(p))
}

func (s *Supervisor) cmdProxyDown(args []string, done func([]string, error)) {
	p, err := s.proxyArg(args)
	if err != nil {
		done(nil, err)
		return
	}
	// Its services go down first, each by its own stop rules; the proxy
	// follows once none is up.
	p.wantDown = true
	for _, svc := range s.sortedServices() {
		if svc.proxy == p.name {
			if _, err := s.down(svc); err != nil {
				s.logf(eventlog.Error, "proxydown: %v", err)
			}
		}
	}
	s.proxyIdle(p.name)
	done(nil, nil)
}

func (s *Supervisor) proxyArg(args []string) (*proxyEntry, error) {
	if len(args) != 1 || s.proxies[args[0]] == nil {
		return nil, errors.New("Couldn't find a valid proxy. bailing.")
	}
	return s.proxies[args[0]], nil
}

func (s *Supervisor) cmdProxyStatus(_ []string, done func([]string, error)) {
	names := make([]string, 0, len(s.proxies))
	for n := range s.proxies {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]string, 0, len(names))
	for _, n := range names {
		p := s.proxies[n]
		state := "down"
		if p.up() {
			state = "up"
		}
		out = append(out, strings.Join([]string{n, state, itoa0(p.pid)}, "\t"))
	}
	done(out, nil)
}

// pidsLine is `command pids`'s line: `name: [proxypid, ]pid`.
func (s *Supervisor) pidsLine(svc *service) string {
	var pids []string
	if p := s.proxies[svc.proxy]; p != nil && p.up() {
		pids = append(pids, strconv.Itoa(p.pid))
	}
	if svc.pid != 0 {
		pids = append(pids, strconv.Itoa(svc.pid))
	}
	return svc.name + ": " + strings.Join(pids, ", ")
}
