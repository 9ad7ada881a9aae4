package supervisor

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/controlfreak-go/cfk/eventlog"
)

// baseBackoff is the unit of the randomised backoff delay: retry n waits
// a random whole multiple of it between 1 and 2n-1, as the original did.
const baseBackoff = 300 * time.Millisecond

// start starts a service that is down (SPEC 1.5).
func (s *Supervisor) start(svc *service) error {
	if s.shuttingDown {
		return ErrShuttingDown
	}
	if svc.isUp() {
		return fmt.Errorf("Service '%s' is already up", svc.name)
	}
	if !svc.cfg.HasCmd() {
		return fmt.Errorf("Service '%s' has no known command", svc.name)
	}
	spec := s.spawnSpec(svc)
	if err := s.childSockets(svc, spec); err != nil {
		// Never a silent /dev/null: the start fails, and says why.
		s.disarm(svc, backoffTimer)
		svc.state = Fail
		svc.failReason = err.Error()
		svc.stopTime = time.Now()
		s.logf(eventlog.Error, "cannot start %s: %v", svc.name, err)
		return fmt.Errorf("Service '%s' cannot start: %v", svc.name, err)
	}
	s.disarm(svc, backoffTimer)
	svc.startTime = time.Now()
	svc.stopTime = time.Time{}
	svc.wantsDown = false
	svc.normalExit = false
	if svc.state != Backoff {
		svc.backoffRetry = 0
	}
	svc.state = Starting
	svc.ready, svc.reloading, svc.notifyStatus, svc.pendingReason = false, false, "", ""
	s.arm(svc, startTimer, svc.cfg.StartWait)
	if svc.cfg.Watchdog > 0 {
		s.arm(svc, watchdogTimer, svc.cfg.Watchdog)
	}

	s.logf(eventlog.Info, "starting %s", svc.name)
	if svc.proxy != "" {
		// The proxy reports the pid when it has forked.
		svc.pid, svc.pgid = 0, 0
		if err := s.startProxied(svc); err != nil {
			s.logf(eventlog.Error, "cannot start %s: %v", svc.name, err)
			svc.failReason = err.Error()
			s.failed(svc)
			return fmt.Errorf("Service '%s' cannot start: %v", svc.name, err)
		}
		return nil
	}
	pid, err := s.run.spawn(spec)
	if err != nil {
		// A command that cannot be exec'd fails like one that dies at
		// once: the same backoff rules apply (the binary may appear).
		s.logf(eventlog.Error, "cannot start %s: %v", svc.name, err)
		svc.failReason = err.Error()
		s.failed(svc)
		return nil
	}
	svc.pid = pid
	svc.pgid = 0
	if !svc.cfg.NoNewSession {
		svc.pgid = pid
	}
	svc.runningCmd = svc.cfg.CmdText()
	s.byPid[pid] = svc
	return nil
}

// stop asks a service to go down: TERM now, KILL after stopwait_secs.
func (s *Supervisor) stop(svc *service) error {
	if svc.state == Backoff {
		s.disarm(svc, backoffTimer)
		s.disarm(svc, startTimer)
		svc.backoffRetry = 0
		svc.state = Stopped
		svc.wantsDown = true
		svc.stopTime = time.Now()
		s.logf(eventlog.Info, "Stopping service '%s' (cancelled its retry)", svc.name)
		s.wentDown(svc)
		return nil
	}
	if !svc.isUp() {
		return fmt.Errorf("Service '%s' is already down", svc.name)
	}
	s.logf(eventlog.Info, "Stopping service '%s'", svc.name)
	if svc.state == Starting {
		s.startSettled(svc, false)
	}
	s.disarm(svc, watchdogTimer)
	svc.stopTime = time.Now()
	svc.startTime = time.Time{}
	svc.state = Stopping
	svc.wantsDown = true
	s.disarm(svc, startTimer)
	s.arm(svc, stopTimer, svc.cfg.StopWait)
	if svc.proxy != "" {
		s.stopProxied(svc)
		return nil
	}
	s.signal(svc, syscall.SIGTERM)
	return nil
}

// signal sends sig to the service's process group, or to its process
// alone when it shares cfkd's session.
func (s *Supervisor) signal(svc *service, sig syscall.Signal) {
	var err error
	if svc.pgid != 0 {
		err = s.run.kill(-svc.pgid, sig)
	} else {
		err = s.run.kill(svc.pid, sig)
	}
	if err != nil && err != syscall.ESRCH {
		s.logf(eventlog.Error, "cannot signal %s (pid %d): %v", svc.name, svc.pid, err)
	}
}

// up starts a service unless it is up; it reports whether it acted.
func (s *Supervisor) up(svc *service) (bool, error) {
	if svc.isUp() {
		return false, nil
	}
	return true, s.start(svc)
}

// down stops a service unless it is down (a pending retry counts as up).
func (s *Supervisor) down(svc *service) (bool, error) {
	if !svc.isUp() && svc.state != Backoff {
		return false, nil
	}
	return true, s.stop(svc)
}

// restart stops a service if it is up, then starts it once it is down.
func (s *Supervisor) restart(svc *service) error {
	if s.shuttingDown {
		return ErrShuttingDown
	}
	if svc.state == Backoff {
		_ = s.stop(svc)
	}
	if !svc.isUp() {
		return s.start(svc)
	}
	if err := s.stop(svc); err != nil {
		return err
	}
	s.whenDown(svc, func() {
		if _, ok := s.services[svc.name]; ok && !svc.isUp() {
			if err := s.start(svc); err != nil {
				s.logf(eventlog.Error, "restart %s: %v", svc.name, err)
			}
		}
	})
	return nil
}

// startSettled runs what waited for a start to succeed or fail.
func (s *Supervisor) startSettled(svc *service, ok bool) {
	hooks := svc.readyHooks
	svc.readyHooks = nil
	for _, f := range hooks {
		f(ok)
	}
}

// whenDown runs f once svc is down, now if it already is.
func (s *Supervisor) whenDown(svc *service, f func()) {
	if !svc.isUp() {
		f()
		return
	}
	svc.whenDown = append(svc.whenDown, f)
}

// wentDown runs what waited for svc to be down.
func (s *Supervisor) wentDown(svc *service) {
	fs := svc.whenDown
	svc.whenDown = nil
	for _, f := range fs {
		f()
	}
	if svc.proxy != "" {
		s.idleCheck[svc.proxy] = true
	}
	s.checkShutdown()
}

// onExit is a reaped child. It routes the exit to its service; children
// that belong to no service (orphans reparented to us) are just logged.
func (s *Supervisor) onExit(pid int, ws syscall.WaitStatus) {
	if p := s.proxyByPid[pid]; p != nil {
		s.onProxyExit(p, ws)
		return
	}
	if p := s.retired[pid]; p != nil {
		s.onRetiredExit(p, ws)
		return
	}
	svc := s.byPid[pid]
	if svc == nil {
		s.logf(eventlog.Debug, "reaped orphan %d: %s", pid, exitReason(ws))
		return
	}
	if svc.proxy != "" {
		if p := s.proxies[svc.proxy]; p != nil {
			p.pids.Store(svc.name, 0) // its last lines may still come
		}
	}
	delete(s.byPid, pid)
	s.disarm(svc, startTimer)
	s.disarm(svc, stopTimer)
	s.disarm(svc, watchdogTimer)
	if svc.state == Starting {
		// Gone before it was running: whoever waits on the start (a
		// rolling restart, an overlapping restart's old process) hears
		// that it failed, whatever the exit status.
		s.startSettled(svc, false)
	}
	if svc.wantsDown && svc.pgid != 0 {
		// Whatever else is left in its process group gets the rest of
		// stopwait_secs, then KILL: a stopped service leaves nothing behind.
		s.lingerGroup(svc.pgid, svc.cfg.StopWait)
	}
	svc.pid = 0
	svc.runningCmd = ""
	svc.exitStatus = ws

	switch {
	case ws.Exited() && ws.ExitStatus() == 0:
		s.logf(eventlog.Info, "child %s exited", svc.name)
		svc.normalExit = true
	case ws.Signaled() && ws.Signal() == syscall.SIGTERM:
		s.logf(eventlog.Info, "child %s gracefully killed", svc.name)
	default:
		svc.failReason = exitReason(ws)
		if svc.pendingReason != "" {
			svc.failReason = svc.pendingReason
			svc.pendingReason = ""
		}
		s.logf(eventlog.Error, "child %s terminated abnormally %d: %s", svc.name, int(ws), svc.failReason)
		s.failed(svc)
		return
	}
	svc.state = Stopped
	svc.stopTime = time.Now()
	s.wentDown(svc)
	if svc.state == Stopped && svc.cfg.RespawnOnStop && svc.normalExit && !svc.wantsDown && !s.shuttingDown {
		if err := s.start(svc); err != nil {
			s.logf(eventlog.Error, "respawn %s: %v", svc.name, err)
		}
	}
}

// failed applies the rules for an abnormal end (SPEC 1.5).
func (s *Supervisor) failed(svc *service) {
	if svc.state == Starting {
		s.startSettled(svc, false)
	}
	s.disarm(svc, watchdogTimer)
	now := time.Now()
	svc.pid = 0
	svc.stopTime = now
	switch {
	case !svc.cfg.RespawnOnFail, svc.wantsDown, s.shuttingDown:
		svc.state = Fail
	case svc.state == Starting:
		svc.backoffRetry++
		if svc.backoffRetry >= svc.cfg.RespawnMaxRetries {
			s.logf(eventlog.Error, "%s failed to start %d times; giving up", svc.name, svc.backoffRetry)
			svc.state = Fatal
			break
		}
		svc.state = Backoff
		factor := 1 + rand.IntN(2*svc.backoffRetry-1)
		s.arm(svc, backoffTimer, time.Duration(factor)*baseBackoff)
		s.wentDown(svc)
		return
	default:
		// It was running: restart at once.
		svc.state = Fail
		s.wentDown(svc)
		if svc.state == Fail {
			if err := s.start(svc); err != nil {
				s.logf(eventlog.Error, "respawn %s: %v", svc.name, err)
			}
		}
		return
	}
	s.wentDown(svc)
}

func (s *Supervisor) onTimer(svc *service, kind timerKind) {
	switch kind {
	case startTimer:
		if svc.state == Starting && svc.pid != 0 && svc.cfg.Ready == readyNotify {
			// startwait_secs is the deadline for READY=1.
			s.killForReason(svc, fmt.Sprintf("did not send READY=1 within startwait_secs (%v)", svc.cfg.StartWait))
		} else if svc.state == Starting && svc.pid != 0 {
			svc.state = Running
			svc.backoffRetry = 0
			s.startSettled(svc, true)
		} else if svc.state == Starting && svc.proxy != "" && s.stillPreloading(svc) {
			// startwait_secs counts from the proxy's first word, not
			// through its preload.
			s.arm(svc, startTimer, max(svc.cfg.StartWait, minReportWait))
		} else if svc.state == Starting && svc.proxy != "" {
			svc.failReason = fmt.Sprintf("proxy '%s' did not report the start within startwait_secs", svc.proxy)
			s.logf(eventlog.Error, "%s: %s", svc.name, svc.failReason)
			s.stopProxied(svc)
			if p := s.proxies[svc.proxy]; p != nil && p.up() {
				if p.abandoned == nil {
					p.abandoned = map[string]int{}
				}
				p.abandoned[svc.name]++
			}
			s.failed(svc)
		}
	case stopTimer:
		if svc.state == Stopping && svc.pid != 0 {
			s.logf(eventlog.Warn, "service %s still running after %v, killing", svc.name, svc.cfg.StopWait)
			s.signal(svc, syscall.SIGKILL)
		} else if svc.state == Stopping {
			// A proxied start that never reported a pid.
			svc.failReason = fmt.Sprintf("proxy '%s' never reported the pid", svc.proxy)
			svc.state = Fail
			svc.stopTime = time.Now()
			s.wentDown(svc)
		}
	case watchdogTimer:
		if svc.isUp() && svc.pid != 0 && svc.state != Stopping {
			s.killForReason(svc, fmt.Sprintf("watchdog: no WATCHDOG=1 for %v", svc.cfg.Watchdog))
		}
	case backoffTimer:
		if svc.state == Backoff {
			s.logf(eventlog.Info, "restarting %s [attempt: %d]", svc.name, svc.backoffRetry+1)
			if err := s.start(svc); err != nil {
				s.logf(eventlog.Error, "restart %s: %v", svc.name, err)
			}
		}
	}
}

// lingerGroup gives what is left of a stopped service's process group d
// to exit, then kills it.
func (s *Supervisor) lingerGroup(pgid int, d time.Duration) {
	if s.run.kill(-pgid, 0) != nil {
		return // empty already
	}
	s.lingering[pgid] = true
	time.AfterFunc(d, func() { s.send(lingerEvent{pgid}) })
}

func (s *Supervisor) killLingering(pgid int) {
	if !s.lingering[pgid] {
		return // emptied and forgotten before its time: the number may be another group's now
	}
	delete(s.lingering, pgid)
	for _, svc := range s.services {
		if svc.pgid == pgid && svc.pid != 0 {
			return // the number is a live service's group again
		}
	}
	if s.run.kill(-pgid, syscall.SIGKILL) == nil {
		s.logf(eventlog.Warn, "killed processes left in group %d after stopwait", pgid)
	}
	s.checkShutdown()
}

// beginShutdown brings every service down; the loop ends when all are.
func (s *Supervisor) beginShutdown() {
	if s.shuttingDown {
		return
	}
	s.shuttingDown = true
	s.logf(eventlog.Info, "shutting down: stopping every service")
	if s.opts.OnShutdown != nil {
		s.opts.OnShutdown()
	}
	// Old processes of an overlapping restart still waiting for their
	// successor go now too (their successor is being stopped anyway).
	for _, p := range s.retired {
		s.retire(p, DefaultStopWait)
	}
	var longest time.Duration
	for _, svc := range s.sortedServices() {
		if svc.cfg.StopWait > longest {
			longest = svc.cfg.StopWait
		}
		if _, err := s.down(svc); err != nil {
			s.logf(eventlog.Error, "shutdown: %v", err)
		}
	}
	// A last resort: whatever has not gone after the longest stopwait
	// and a KILL is not waited for.
	time.AfterFunc(longest+proxyKillWait+2*time.Second, func() {
		s.send(funcEvent{func() {
			for _, svc := range s.services {
				if svc.isUp() {
					s.logf(eventlog.Error, "%s did not exit after KILL; exiting anyway", svc.name)
					svc.pid, svc.state = 0, Fail
				}
			}
			for _, p := range s.proxies {
				if p.up() {
					s.logf(eventlog.Error, "proxy '%s' did not exit; exiting anyway", p.name)
					_ = syscall.Kill(p.pid, syscall.SIGKILL)
					p.pid = 0
				}
			}
			s.lingering = map[int]bool{}
			s.checkShutdown()
		}})
	})
	s.checkShutdown()
}

// checkShutdown ends the loop once a shutdown has nothing left to wait for.
func (s *Supervisor) checkShutdown() {
	if !s.shuttingDown || len(s.lingering) > 0 {
		return
	}
	for _, svc := range s.services {
		if svc.isUp() {
			return
		}
	}
	proxiesUp := false
	for _, p := range s.proxies {
		if p.up() {
			s.stopProxy(p, "shutdown")
			proxiesUp = true
		}
	}
	if proxiesUp {
		return
	}
	select {
	case <-s.shutdownDone:
	default:
		close(s.shutdownDone)
	}
}
