package main

import (
	"fmt"
	"sync"
	"syscall"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

// tracker remembers every service pid the driver caused to exist, so that
// an interrupted or failed run leaves nothing behind; the supervisors'
// process groups are benchkit's to remember. (Should the driver itself be
// killed, run.sh finds the leftovers by their executable or directory
// under its scratch directory.)
type tracker struct {
	mu        sync.Mutex
	services  map[int]bool
	markerExe string // set once before any process is launched
}

var tracked = &tracker{services: map[int]bool{}}

func (t *tracker) service(pid int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.services[pid] = true
}

// killAll sends SIGKILL to every group launched and to every service
// process still alive. A service pid is only signalled while it is still
// the marker, as the number may have been reused since.
func (t *tracker) killAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	benchkit.KillAll(0) // KILL at once: no TERM first
	for pid := range t.services {
		if exeIs(pid, t.markerExe) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from <linux/prctl.h>.
const prSetChildSubreaper = 36

// adoptOrphans makes the driver the reaper of every process below it, so
// that a runsv or a service whose parent exited first is reparented to the
// driver instead of init, and its CPU time still ends up in the driver's
// RUSAGE_CHILDREN when reapOrphans collects it.
func adoptOrphans() error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", e)
	}
	return nil
}

// reapOrphans collects adopted processes that have exited. wait4(-1) would
// also take the status an exec.Cmd is waiting for, so it is only called
// when no command or supervisor launched by the driver is running.
func reapOrphans() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
