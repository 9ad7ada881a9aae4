package supervisor

import (
	"fmt"
	"syscall"
	"time"

	"github.com/controlfreak-go/cfk/eventlog"
)

// An overlapping restart starts a service's new process while the old
// one still serves, and retires the old one (TERM to its process group,
// KILL after stopwait_secs) only once the new one is ready. A pool on a
// shared socket then never has a worker fewer during a rolling restart,
// and a step does not wait for the old process to drain: the drain goes
// on beside the next steps.
//
// It needs what only a shared socket gives: two processes of one service
// must be able to run at once. A service that binds its own port would
// find it taken, so the overlap is asked for (`command rollrestart SEL K
// overlap`, `cfkctl restart @web --rolling --overlap`), never assumed. It
// applies to running services with a process group of their own, not
// proxied; others restart the plain way within the same operation.
//
// A new process that cannot even be started (an unknown socket, a
// missing program) leaves the old one in place as the service's; one
// that starts and then fails before it is ready retires the old one all
// the same, as a plain restart would have stopped it.

// retiredProc is a service's previous process after an overlapping
// restart: out of the service's books, signalled or about to be.
type retiredProc struct {
	name      string
	pid, pgid int
	signalled bool // TERM sent, its group lingering
}

// canOverlap says whether svc restarts the overlapping way.
func canOverlap(svc *service) bool {
	return svc.proxy == "" && svc.state == Running && svc.pid != 0 && svc.pgid != 0
}

// restartOverlapping starts svc's new process beside its old one; the
// old one is retired when the new one is ready or has failed.
func (s *Supervisor) restartOverlapping(svc *service) error {
	if s.shuttingDown {
		return ErrShuttingDown
	}
	if !canOverlap(svc) {
		return s.restart(svc)
	}
	old := &retiredProc{name: svc.name, pid: svc.pid, pgid: svc.pgid}
	oldStart := svc.startTime
	delete(s.byPid, old.pid)
	s.retired[old.pid] = old
	s.disarm(svc, watchdogTimer)
	svc.pid, svc.pgid = 0, 0
	svc.state = Stopped // down in the books, so that start proceeds
	s.logf(eventlog.Info, "restarting %s beside its running process %d", svc.name, old.pid)
	err := s.start(svc)
	if err != nil || svc.state != Starting {
		// It could not even be started (an unknown socket, a missing
		// binary): nothing new runs, so the old process stays the
		// service's, and the caller hears why.
		if err == nil {
			err = fmt.Errorf("Service '%s' cannot start: %s", svc.name, svc.failReason)
		}
		s.disarm(svc, backoffTimer)
		s.disarm(svc, startTimer)
		delete(s.retired, old.pid)
		svc.pid, svc.pgid, svc.startTime = old.pid, old.pgid, oldStart
		svc.state, svc.backoffRetry = Running, 0
		s.byPid[old.pid] = svc
		if svc.cfg.Watchdog > 0 {
			s.arm(svc, watchdogTimer, svc.cfg.Watchdog)
		}
		s.logf(eventlog.Error, "%v; %s keeps its running process %d", err, svc.name, old.pid)
		return err
	}
	stopWait := svc.cfg.StopWait
	svc.readyHooks = append([]func(bool){func(bool) { s.retire(old, stopWait) }}, svc.readyHooks...)
	return nil
}

// retire sends TERM to an old process's group and gives the group
// stopWait before KILL, as a stopped service's leftovers get.
func (s *Supervisor) retire(p *retiredProc, stopWait time.Duration) {
	if p.signalled {
		return
	}
	p.signalled = true
	if _, alive := s.retired[p.pid]; alive {
		s.logf(eventlog.Info, "retiring the previous process of %s (pid %d)", p.name, p.pid)
	}
	// The whole group, as a stop does: what the old process started goes
	// with it (it may have exited itself and left them).
	if err := s.run.kill(-p.pgid, syscall.SIGTERM); err != nil && err != syscall.ESRCH {
		s.logf(eventlog.Error, "cannot signal the previous process of %s (pid %d): %v", p.name, p.pid, err)
	}
	s.lingerGroup(p.pgid, stopWait)
}

// onRetiredExit is the exit of a retired process. Its group no longer
// needs to be waited for once empty, which lets a shutdown end early.
func (s *Supervisor) onRetiredExit(p *retiredProc, ws syscall.WaitStatus) {
	delete(s.retired, p.pid)
	s.logf(eventlog.Info, "previous process of %s (pid %d) ended: %s", p.name, p.pid, exitReason(ws))
	if s.lingering[p.pgid] && s.run.kill(-p.pgid, 0) != nil {
		delete(s.lingering, p.pgid)
		s.checkShutdown()
	}
}
