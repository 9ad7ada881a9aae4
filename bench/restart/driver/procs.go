package main

import (
	"fmt"
	"net"
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

// child is a process the driver started (a supervisor, wrk's peers'
// roots, a control command). Each runs in a process group of its own.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// children are the process groups to kill when the driver ends.
var children struct {
	sync.Mutex
	pgids []int
}

// start runs argv in dir with stdout and stderr appended to logPath.
func start(dir, logPath string, env []string, argv ...string) (*child, error) {
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
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

// cleanEnv is the driver's environment without a service manager's
// variables, which must not reach the peers.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// stop sends sig and waits up to grace for the exit, then KILLs the group.
func (c *child) stop(sig syscall.Signal, grace time.Duration) {
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
		<-c.exited
	}
}

// run runs a control command (cfkctl, supervisorctl) to its end.
func run(dir string, argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// killAll KILLs every process group the driver started.
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

// procStat is what the driver reads of /proc/PID/stat.
type procStat struct {
	ppid  int
	state byte
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) may hold spaces; fields restart after ")".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+4 >= len(s) {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ppid, err := strconv.Atoi(f[1])
	return procStat{ppid: ppid, state: f[0][0]}, err
}

// alive tells whether pid is a process that has not exited: a zombie
// (exited, not reaped yet) serves nothing and counts as gone.
func alive(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != 'Z' && st.state != 'X'
}

// descendants lists the live processes below root, from one scan of
// /proc (this kernel has no /proc/PID/task/TID/children).
func descendants(root int) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	parent := make(map[int]int, len(dirs))
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil && st.state != 'Z' {
			parent[pid] = st.ppid
		}
	}
	var out []int
	for pid := range parent {
		for p, hops := parent[pid], 0; p > 1 && hops < 64; p, hops = parent[p], hops+1 {
			if p == root {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

func exeOf(pid int) string {
	s, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return s
}

func cmdlineOf(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
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

// freePort finds a loopback port nobody listens on now, for the peers
// that bind their own socket.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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
