package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/controlfreak-go/cfk/eventlog"
	"github.com/controlfreak-go/cfk/listener"
	"github.com/controlfreak-go/cfk/proxy"
)

// An in-place upgrade re-executes cfkd (the same binary or a new one) in
// the same process: the pid stays, so every service stays cfkd's child,
// and every fd cfkd holds survives exec once its close-on-exec flag is
// cleared. What crosses is named and described in a Handover document:
// listening sockets, the console listener and the lock (main's), notify
// socket, output pipes, proxy pipes, and the whole state of every
// service. The next cfkd resumes from it; no service is restarted and no
// listening socket is ever closed.
//
// The new binary is first asked whether it can read the document
// (`cfkd --upgrade-check`); one that cannot start or refuses it leaves
// the old cfkd running, which says why.

// HandoverVersion is the version of the Handover document.
const HandoverVersion = 1

// EnvHandover names the fd of the Handover document in the next cfkd.
const EnvHandover = "_CFKD_HANDOVER_FD"

// upgradeCheckWait bounds how long the new binary may take to say it can
// read the document.
const upgradeCheckWait = 10 * time.Second

// Handover is the document one cfkd hands the next.
type Handover struct {
	Version    int               `json:"version"`
	Upgrades   int               `json:"upgrades"`
	Services   []savedService    `json:"services"`
	Sockets    []savedSocket     `json:"sockets"`
	Proxies    []savedProxy      `json:"proxies"`
	Pipes      []savedPipe       `json:"pipes"`
	NotifyPath string            `json:"notify_path,omitempty"`
	NotifyFd   int               `json:"notify_fd,omitempty"`
	Lingering  []int             `json:"lingering,omitempty"`
	RollingSeq int               `json:"rolling_seq"`
	Main       map[string]int    `json:"main"` // fds main hands over, by name
	Extra      map[string]string `json:"extra,omitempty"`
}

type savedService struct {
	Name          string                `json:"name"`
	Cfg           Config                `json:"cfg"`
	Proxy         string                `json:"proxy,omitempty"`
	State         State                 `json:"state"`
	Pid           int                   `json:"pid,omitempty"`
	Pgid          int                   `json:"pgid,omitempty"`
	StartTime     time.Time             `json:"start_time"`
	StopTime      time.Time             `json:"stop_time"`
	RunningCmd    string                `json:"running_cmd,omitempty"`
	ExitStatus    int                   `json:"exit_status"`
	FailReason    string                `json:"fail_reason,omitempty"`
	WantsDown     bool                  `json:"wants_down"`
	NormalExit    bool                  `json:"normal_exit"`
	BackoffRetry  int                   `json:"backoff_retry"`
	Ready         bool                  `json:"ready"`
	Reloading     bool                  `json:"reloading"`
	NotifyStatus  string                `json:"notify_status,omitempty"`
	PendingReason string                `json:"pending_reason,omitempty"`
	Deadlines     [timerKinds]time.Time `json:"deadlines"`
}

type savedSocket struct {
	Name  string             `json:"name"`
	Spec  listener.Spec      `json:"spec"`
	Bound *listener.Handover `json:"bound,omitempty"`
}

type savedProxy struct {
	Name    string         `json:"name"`
	Cfg     proxy.Config   `json:"cfg"`
	Pid     int            `json:"pid,omitempty"`
	Gen     uint64         `json:"gen"`
	Cmd     int            `json:"cmd_fd,omitempty"`
	Status  int            `json:"status_fd,omitempty"`
	Log     int            `json:"log_fd,omitempty"`
	Sockets []string       `json:"sockets,omitempty"`
	Pids    map[string]int `json:"pids,omitempty"`
}

// ReadHandover parses a Handover document and checks that this cfkd can
// resume from it.
func ReadHandover(b []byte) (*Handover, error) {
	var h Handover
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("the handover document does not parse: %v", err)
	}
	if h.Version != HandoverVersion {
		return nil, fmt.Errorf("handover version %d, this cfkd reads version %d", h.Version, HandoverVersion)
	}
	return &h, nil
}

// busy says why an upgrade cannot happen now, or "".
func (s *Supervisor) upgradeBusy() string {
	if s.shuttingDown {
		return "cfkd is shutting down"
	}
	for _, op := range s.rolling {
		if op.state == "running" {
			return fmt.Sprintf("rolling restart %d is running; wait for it to end", op.id)
		}
	}
	if n := len(s.retired); n > 0 {
		// Their drain would be cut short: the new cfkd gives a lingering
		// group only the default stopwait.
		return fmt.Sprintf("%d old processes of an overlapping restart are still draining (at most their stopwait_secs); try again in a moment", n)
	}
	for _, svc := range s.sortedServices() {
		if len(svc.whenDown) > 0 || len(svc.readyHooks) > 0 {
			return fmt.Sprintf("%s has a restart or destroy in flight; try again in a moment", svc.name)
		}
	}
	for _, p := range s.proxies {
		if p.stopping {
			return fmt.Sprintf("proxy '%s' is stopping; try again in a moment", p.name)
		}
	}
	return ""
}

// snapshot writes the state down (the fds are recorded, not yet
// released).
func (s *Supervisor) snapshot() *Handover {
	h := &Handover{Version: HandoverVersion, Upgrades: s.upgrades + 1, RollingSeq: s.rollingSeq, Main: map[string]int{}}
	for _, svc := range s.sortedServices() {
		h.Services = append(h.Services, savedService{
			Name: svc.name, Cfg: svc.cfg, Proxy: svc.proxy, State: svc.state, Pid: svc.pid, Pgid: svc.pgid,
			StartTime: svc.startTime, StopTime: svc.stopTime, RunningCmd: svc.runningCmd,
			ExitStatus: int(svc.exitStatus), FailReason: svc.failReason, WantsDown: svc.wantsDown,
			NormalExit: svc.normalExit, BackoffRetry: svc.backoffRetry, Ready: svc.ready,
			Reloading: svc.reloading, NotifyStatus: svc.notifyStatus, PendingReason: svc.pendingReason,
			Deadlines: svc.deadlines,
		})
	}
	for name, e := range s.sockets {
		ss := savedSocket{Name: name, Spec: e.spec}
		if e.sock != nil {
			ho := e.sock.Handover()
			ss.Bound = &ho
		}
		h.Sockets = append(h.Sockets, ss)
	}
	for pgid := range s.lingering {
		h.Lingering = append(h.Lingering, pgid)
	}
	return h
}

// cmdUpgrade answers `command upgrade [BINARY]`. On success there is no
// answer: the connection closes as cfkd re-executes, and the next cfkd
// serves the same socket. On failure the answer says why and nothing has
// changed.
func (s *Supervisor) cmdUpgrade(args []string, done func([]string, error)) {
	if why := s.upgradeBusy(); why != "" {
		done(nil, errors.New("cannot upgrade now: "+why))
		return
	}
	if s.opts.Exec == nil {
		done(nil, errors.New("this cfkd cannot upgrade in place"))
		return
	}
	binary := s.opts.Binary
	if len(args) > 0 {
		binary = strings.Join(args, " ")
	}
	if binary == "" {
		done(nil, errors.New("no binary to upgrade to: give its path"))
		return
	}
	if st, err := os.Stat(binary); err != nil {
		done(nil, fmt.Errorf("cannot upgrade to %s: %v", binary, unwrapPathErr(err)))
		return
	} else if st.IsDir() || st.Mode()&0o111 == 0 {
		done(nil, fmt.Errorf("cannot upgrade to %s: not an executable file", binary))
		return
	}
	doc, _ := json.Marshal(s.snapshot())
	s.logf(eventlog.Info, "upgrade: asking %s whether it can take over", binary)
	go func() {
		err := checkUpgrade(binary, doc)
		s.send(funcEvent{func() {
			if err != nil {
				s.logf(eventlog.Error, "upgrade to %s refused: %v", binary, err)
				done(nil, fmt.Errorf("cannot upgrade to %s: %v", binary, err))
				return
			}
			if err := s.handOver(binary); err != nil {
				s.logf(eventlog.Error, "upgrade to %s failed: %v", binary, err)
				done(nil, fmt.Errorf("cannot upgrade to %s: %v", binary, err))
			}
		}})
	}()
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// checkUpgrade runs `BINARY --upgrade-check` with the document on its
// stdin; it must answer "ok". Its exit is reaped as an orphan.
func checkUpgrade(binary string, doc []byte) error {
	inR, inW, err := os.Pipe()
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return err
	}
	_, err = syscall.ForkExec(binary, []string{binary, "--upgrade-check"}, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{inR.Fd(), outW.Fd(), outW.Fd()},
	})
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return fmt.Errorf("it cannot start: %v", err)
	}
	go func() {
		inW.Write(doc)
		inW.Close()
	}()
	_ = outR.SetReadDeadline(time.Now().Add(upgradeCheckWait))
	b := make([]byte, 4096)
	n, _ := readFull(outR, b)
	outR.Close()
	ans := strings.TrimSpace(string(b[:n]))
	if ans != "ok" {
		if ans == "" {
			ans = "it said nothing (is it a cfkd?)"
		}
		return errors.New(ans)
	}
	return nil
}

func readFull(f *os.File, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := f.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// handOver stops everything that reads, releases every fd to keep across
// exec, and execs. It returns only if exec failed, with everything
// running again.
func (s *Supervisor) handOver(binary string) error {
	if why := s.upgradeBusy(); why != "" {
		return errors.New("cannot upgrade now: " + why)
	}
	h := s.snapshot()
	var keep []int
	// Output pipes.
	h.Pipes = s.out.pause()
	for _, p := range h.Pipes {
		keep = append(keep, p.Fd)
	}
	// Proxies' pipes.
	var detached []*proxyEntry
	for _, p := range s.proxies {
		sp := savedProxy{Name: p.name, Cfg: p.cfg, Gen: p.gen}
		if p.up() {
			cmd, st, lg, err := p.conn.Detach()
			if err != nil {
				s.resumeAfterFailedExec(h, detached)
				return fmt.Errorf("proxy '%s': %v", p.name, err)
			}
			sp.Pid, sp.Cmd, sp.Status, sp.Log = p.pid, cmd, st, lg
			for name := range p.sockets {
				sp.Sockets = append(sp.Sockets, name)
			}
			sp.Pids = map[string]int{}
			p.pids.Range(func(k, v any) bool { sp.Pids[k.(string)] = v.(int); return true })
			keep = append(keep, cmd, st, lg)
			detached = append(detached, p)
		}
		h.Proxies = append(h.Proxies, sp)
	}
	// The notify socket.
	if s.notify != nil {
		fd, err := s.notify.detach()
		if err != nil {
			s.resumeAfterFailedExec(h, detached)
			return fmt.Errorf("notify socket: %v", err)
		}
		h.NotifyPath, h.NotifyFd = s.notify.path, fd
		keep = append(keep, fd)
	}
	for _, ss := range h.Sockets {
		if ss.Bound != nil {
			keep = append(keep, ss.Bound.Fd)
		}
	}
	if s.opts.MainData != nil {
		h.Extra = s.opts.MainData()
	}
	if s.opts.MainFds != nil {
		for name, fd := range s.opts.MainFds() {
			h.Main[name] = fd
			keep = append(keep, fd)
		}
	}
	doc, _ := json.Marshal(h)
	memfd, err := unix.MemfdCreate("cfkd-handover", 0)
	if err == nil {
		_, err = unix.Write(memfd, doc)
		_, _ = unix.Seek(memfd, 0, 0)
	}
	if err != nil {
		s.resumeAfterFailedExec(h, detached)
		return fmt.Errorf("handover document: %v", err)
	}
	keep = append(keep, memfd)
	for _, fd := range keep {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			s.logf(eventlog.Error, "upgrade: fd %d: %v", fd, err)
		}
	}
	s.logf(eventlog.Info, "upgrade: re-executing %s (pid %d stays; %d services, %d fds handed over)",
		binary, os.Getpid(), len(h.Services), len(keep))
	err = s.opts.Exec(binary, []string{EnvHandover + "=" + strconv.Itoa(memfd)})
	// Still here: exec failed. Take everything back.
	for _, fd := range keep {
		unix.CloseOnExec(fd)
	}
	unix.Close(memfd)
	s.resumeAfterFailedExec(h, detached)
	return err
}

// resumeAfterFailedExec restarts the readers handOver stopped.
func (s *Supervisor) resumeAfterFailedExec(h *Handover, detached []*proxyEntry) {
	s.out.resume()
	for _, p := range detached {
		for _, sp := range h.Proxies {
			if sp.Name == p.name && sp.Cmd != 0 {
				s.openProxyConn(p, sp.Cmd, sp.Status, sp.Log)
			}
		}
	}
	if s.notify != nil && h.NotifyFd != 0 {
		if n, err := notifierFromFd(h.NotifyPath, h.NotifyFd); err == nil {
			s.notify = n
			n.start(func(ev notifyEvent) bool { return s.send(ev) })
		} else {
			s.logf(eventlog.Error, "notify socket lost: %v", err)
			s.notify = nil
		}
	}
}

// Resume builds a Supervisor from the previous cfkd's Handover: same
// services, same pids, same fds. Run then goes on where it left off.
func Resume(opts Options, h *Handover) (*Supervisor, error) {
	notifyPath := opts.NotifyPath
	opts.NotifyPath = "" // the socket is handed over, not bound again
	s, err := New(opts)
	if err != nil {
		return nil, err
	}
	s.opts.NotifyPath = notifyPath
	s.upgrades = h.Upgrades
	s.rollingSeq = h.RollingSeq
	if h.NotifyFd != 0 {
		if s.notify, err = notifierFromFd(h.NotifyPath, h.NotifyFd); err != nil {
			return nil, err
		}
	}
	for _, ss := range h.Sockets {
		e := &socketEntry{spec: ss.Spec}
		if ss.Bound != nil {
			if e.sock, err = listener.Resume(ss.Spec, *ss.Bound); err != nil {
				return nil, err
			}
		}
		s.sockets[ss.Name] = e
	}
	for _, sv := range h.Services {
		svc := &service{
			name: sv.Name, cfg: sv.Cfg, proxy: sv.Proxy, state: sv.State, pid: sv.Pid, pgid: sv.Pgid,
			startTime: sv.StartTime, stopTime: sv.StopTime, runningCmd: sv.RunningCmd,
			exitStatus: syscall.WaitStatus(sv.ExitStatus), failReason: sv.FailReason,
			wantsDown: sv.WantsDown, normalExit: sv.NormalExit, backoffRetry: sv.BackoffRetry,
			ready: sv.Ready, reloading: sv.Reloading, notifyStatus: sv.NotifyStatus, pendingReason: sv.PendingReason,
		}
		s.services[svc.name] = svc
		if svc.pid != 0 {
			s.byPid[svc.pid] = svc
		}
		for k := timerKind(0); k < timerKinds; k++ {
			if d := sv.Deadlines[k]; !d.IsZero() {
				s.arm(svc, k, max(time.Until(d), 0))
			}
		}
	}
	for _, sp := range h.Proxies {
		p := &proxyEntry{name: sp.Name, cfg: sp.Cfg, gen: sp.Gen}
		s.proxies[p.name] = p
		if sp.Pid == 0 {
			continue
		}
		p.pid = sp.Pid
		p.sockets = map[string]bool{}
		for _, n := range sp.Sockets {
			p.sockets[n] = true
		}
		for name, pid := range sp.Pids {
			p.pids.Store(name, pid)
		}
		s.proxyByPid[p.pid] = p
		s.openProxyConn(p, sp.Cmd, sp.Status, sp.Log)
	}
	for _, p := range h.Pipes {
		s.out.adopt(p)
	}
	// Proxied services' own log files, as their configuration says.
	for _, svc := range s.services {
		if p := s.proxies[svc.proxy]; p != nil && p.up() {
			s.proxiedLogFile(p, svc)
		}
	}
	for _, pgid := range h.Lingering {
		s.lingering[pgid] = true
		pgid := pgid
		time.AfterFunc(DefaultStopWait, func() { s.send(lingerEvent{pgid}) })
	}
	// A proxy's status line read but not handled before the exec is lost:
	// a proxied worker that is gone now exited during the upgrade.
	for _, svc := range s.services {
		if svc.proxy != "" && svc.pid != 0 && syscall.Kill(svc.pid, 0) == syscall.ESRCH {
			pid := svc.pid
			s.events <- exitEvent{pid: pid, status: syscall.WaitStatus(255 << 8)}
		}
	}
	s.logf(eventlog.Info, "resumed after in-place upgrade %d: %d services, %d sockets, %d proxies",
		h.Upgrades, len(h.Services), len(h.Sockets), len(h.Proxies))
	return s, nil
}

// cmdUpgrades answers `command upgrades`: how many in-place upgrades this
// cfkd process has been through.
func (s *Supervisor) cmdUpgrades(_ []string, done func([]string, error)) {
	done([]string{strconv.Itoa(s.upgrades)}, nil)
}
