package main

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is a supervisor the driver launched. It runs in a process group of
// its own so that cleanup can signal it and whatever stayed in its group.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been reaped
	err    error         // its exit status, valid after exited
}

// launch starts argv[0] with its output in logPath. extraEnv is added to
// the driver's environment.
func launch(dir, logPath string, extraEnv []string, argv ...string) (*proc, error) {
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	tracked.group(cmd.Process.Pid)
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// wait waits up to timeout for the process to exit.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("pid %d still running after %v", p.pid(), timeout)
	}
}

// tracker remembers every process group and service pid the driver caused
// to exist, so that an interrupted or failed run leaves nothing behind.
// (Should the driver itself be killed, run.sh finds the leftovers by their
// executable or directory under its scratch directory.)
type tracker struct {
	mu        sync.Mutex
	groups    []int
	services  map[int]bool
	markerExe string // set once before any process is launched
}

var tracked = &tracker{services: map[int]bool{}}

func (t *tracker) group(pgid int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.groups = append(t.groups, pgid)
}

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
	for _, g := range t.groups {
		syscall.Kill(-g, syscall.SIGKILL)
	}
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
