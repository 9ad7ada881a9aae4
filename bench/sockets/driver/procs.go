package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process the driver started (cfkd, the launcher, wrk). Each
// runs in a process group of its own, so cleanup can signal the group.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// children are the process groups to kill when the driver ends.
var children struct {
	sync.Mutex
	pgids []int
}

// start runs argv with stdout and stderr appended to logPath.
func start(logPath string, env []string, argv ...string) (*child, error) {
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	children.Lock()
	children.pgids = append(children.pgids, cmd.Process.Pid)
	children.Unlock()
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop sends TERM and waits up to grace for the exit, then KILLs the group.
func (c *child) stop(grace time.Duration) {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
		<-c.exited
	}
}

// killAll KILLs every process group the driver started. cfkd's services
// and the launcher's workers have their own groups or sessions; cfkd and
// the launcher stop them on TERM, and run.sh sweeps whatever is left.
func killAll() {
	children.Lock()
	defer children.Unlock()
	for _, pg := range children.pgids {
		_ = syscall.Kill(-pg, syscall.SIGTERM)
	}
	time.Sleep(300 * time.Millisecond)
	for _, pg := range children.pgids {
		_ = syscall.Kill(-pg, syscall.SIGKILL)
	}
}

// cpuTime is the user+system time a process has used, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 10 ms).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields restart after ")".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(ut+st) * tick, nil
}

// childrenOf lists the pids whose parent is ppid, from a scan of /proc
// (this kernel has no /proc/PID/task/TID/children).
func childrenOf(ppid int) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if pp, _, err := parentAndState(pid); err == nil && pp == ppid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// parentAndState reads the parent pid and the state letter of a process.
func parentAndState(pid int) (ppid int, state string, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, "", fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0], err
}

// waitFor polls cond every step until it holds or timeout passes.
func waitFor(timeout, step time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(step)
	}
}

// otherCPU is the CPU time used so far by the user-space processes that
// are not the benchmark's (neither the driver nor any process below it),
// counting for each its own time and that of the children it reaped: a
// process that exits within a window then still counts, in its reaper's
// sum. Kernel threads are left out. The difference of two readings is
// what the rest of the machine took while a measurement ran. It is an
// estimate: a process that exits while /proc is being read may be
// counted twice or not at all, which matters only when other processes
// fork and exit by the hundred (see otherShare).
func otherCPU() time.Duration {
	self := os.Getpid()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	type entry struct {
		ppid int
		cpu  time.Duration
	}
	procs := make(map[int]entry, len(dirs))
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		var ticks int64
		for j := 11; j <= 14; j++ { // utime, stime, cutime, cstime
			n, _ := strconv.ParseInt(f[j], 10, 64)
			ticks += n
		}
		procs[pid] = entry{ppid, time.Duration(ticks) * 10 * time.Millisecond}
	}
	var sum time.Duration
	for pid, e := range procs {
		if pid == 2 || e.ppid == 2 { // kthreadd and the kernel threads
			continue
		}
		ours := false
		for p, hops := pid, 0; p > 1 && hops < 64; hops++ {
			if p == self {
				ours = true
				break
			}
			next, ok := procs[p]
			if !ok {
				break
			}
			p = next.ppid
		}
		if !ours {
			sum += e.cpu
		}
	}
	return sum
}

// otherShare turns two otherCPU readings taken elapsed apart into a share
// of the machine's CPUs, clamped to 0..1 (a snapshot of /proc is not
// atomic, so a busy machine can read a little outside).
func otherShare(before, after time.Duration, elapsed time.Duration) float64 {
	share := float64(after-before) / (float64(elapsed) * float64(runtime.NumCPU()))
	return max(0, min(1, share))
}
