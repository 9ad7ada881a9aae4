package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
	return time.Duration(ticks) * clockTick
}

// clockTick is USER_HZ, the unit of /proc's CPU times.
const clockTick = 10 * time.Millisecond

// driverCPU is the CPU time of the driver and of its reaped children
// (wrk, cfkctl, supervisorctl, start_server --restart).
func driverCPU() time.Duration {
	var sum time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			sum += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return sum
}

// treeCPU is the CPU time of a peer's whole process tree: the root's own
// and its reaped children's (utime, stime, cutime, cstime), plus each
// live descendant's own. A worker that exits moves from the second sum
// to its parent's cutime, so the total stays right across a restart.
func treeCPU(root int) time.Duration {
	sum := statCPU(root, true)
	for _, pid := range descendants(root) {
		sum += statCPU(pid, false)
	}
	return sum
}

// statCPU reads utime+stime (and cutime+cstime with reaped) of pid.
func statCPU(pid int, reaped bool) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return 0
	}
	last := 12
	if reaped {
		last = 14
	}
	var ticks int64
	for j := 11; j <= last; j++ {
		n, _ := strconv.ParseInt(f[j], 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * clockTick
}
