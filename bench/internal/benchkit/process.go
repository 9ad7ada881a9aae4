package benchkit

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spec says how to start a program under test.
type Spec struct {
	Dir string   // working directory; "" is the driver's
	Log string   // file its stdout and stderr are appended to
	Env []string // added to the environment
	// KeepManagerEnv passes the driver's whole environment on, a service
	// manager's variables (NOTIFY_SOCKET, LISTEN_FDS ...) included, as
	// bench/driver always has; otherwise the child gets CleanEnv.
	KeepManagerEnv bool
}

// Child is a process the driver started. It runs in a process group of
// its own, so that cleanup can signal it and whatever stayed in its group.
type Child struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been reaped
}

// groups are the process groups Start made, for KillAll.
var groups struct {
	sync.Mutex
	pgids []int
}

// Start runs argv as spec says and returns once it has forked.
func Start(spec Spec, argv ...string) (*Child, error) {
	out, err := os.OpenFile(spec.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = spec.Dir
	base := CleanEnv()
	if spec.KeepManagerEnv {
		base = os.Environ()
	}
	cmd.Env = append(base, spec.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	groups.Lock()
	groups.pgids = append(groups.pgids, cmd.Process.Pid)
	groups.Unlock()
	c := &Child{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// Pid is the child's pid, which is also its process group's id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Exited is closed once the child has exited and been reaped.
func (c *Child) Exited() <-chan struct{} { return c.exited }

// Running tells whether the child has not exited yet.
func (c *Child) Running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// Wait waits up to timeout for the child to exit.
func (c *Child) Wait(timeout time.Duration) error {
	select {
	case <-c.exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("pid %d still running after %v", c.Pid(), timeout)
	}
}

// Stop sends sig to the child and waits up to grace for its exit, then
// KILLs its whole group.
func (c *Child) Stop(sig syscall.Signal, grace time.Duration) {
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-c.Pid(), syscall.SIGKILL)
		<-c.exited
	}
}

// TermGrace is how long KillAll leaves the groups between TERM and KILL
// when a driver fails or is interrupted: time for cfkd or a peer to stop
// its own services, which run in groups or sessions of their own.
const TermGrace = 300 * time.Millisecond

// KillAll signals every process group Start made: TERM, then after grace
// KILL; with grace 0, KILL alone. What left its group (a service in a
// session of its own whose parent was killed first) is the driver's or
// run.sh's to find.
func KillAll(grace time.Duration) {
	groups.Lock()
	defer groups.Unlock()
	if grace > 0 {
		for _, pg := range groups.pgids {
			_ = syscall.Kill(-pg, syscall.SIGTERM)
		}
		time.Sleep(grace)
	}
	for _, pg := range groups.pgids {
		_ = syscall.Kill(-pg, syscall.SIGKILL)
	}
}

// CleanEnv is the driver's environment without a service manager's
// variables, which must not reach the programs under test: a cfkd that
// finds NOTIFY_SOCKET would notify the manager that started the driver,
// and a worker that finds LISTEN_FDS would take fds that are not its own.
func CleanEnv() []string {
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

// WaitFor checks cond every step until it holds or timeout passes, and
// tells whether it held. The last check is at the deadline.
func WaitFor(timeout, step time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(step, left))
	}
}
