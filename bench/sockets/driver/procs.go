package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// machineBusy is the CPU time the whole machine has spent not idle (user,
// nice, system, irq, softirq, steal), from the first line of /proc/stat.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// selfCPU is the CPU time the driver itself has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// treeCPU sums the CPU time of the given processes.
func treeCPU(pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		if t, err := cpuTime(pid); err == nil {
			sum += t
		}
	}
	return sum
}
