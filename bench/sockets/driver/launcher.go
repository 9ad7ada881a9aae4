package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

// The by-hand pool: what an operator gets without a supervisor on the
// data path either. The launcher binds one listening socket, starts the
// workers with it as fd 3 under systemd's protocol (LISTEN_FDS=1,
// LISTEN_PID = the worker's own pid), then only waits: it never accepts
// and never respawns. The workers are the same program as under cfkd.

// launch runs the launcher until TERM, then stops its workers.
func launch(worker string, n int, addrFile string) error {
	fd, err := bindLoopback()
	if err != nil {
		return err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	ls := os.NewFile(uintptr(fd), "listen")
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var workers []*exec.Cmd
	for i := 1; i <= n; i++ {
		// The worker's LISTEN_PID must be its own pid, known only after
		// the fork: the driver re-executes itself as an exec step that
		// sets it and execs the worker in the same process.
		cmd := exec.Command(self, "-exec-step", worker)
		cmd.Env = append(benchkit.CleanEnv(), "LISTEN_FDS=1", "LISTEN_FDNAMES=web",
			fmt.Sprintf("CONTROL_FREAK_SERVICE=h%d", i))
		cmd.ExtraFiles = []*os.File{ls}
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start worker %d: %w", i, err)
		}
		workers = append(workers, cmd)
	}
	if err := os.WriteFile(addrFile+".tmp", []byte(addr+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(addrFile+".tmp", addrFile); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	for _, w := range workers {
		_ = w.Process.Signal(syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() {
		for _, w := range workers {
			_ = w.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		for _, w := range workers {
			_ = w.Process.Kill()
		}
	}
	return nil
}

// bindLoopback binds and listens on 127.0.0.1, any free port, as cfkd
// does for `socket web host=127.0.0.1 service=0`: SO_REUSEADDR, a
// blocking fd, the kernel's somaxconn as backlog.
func bindLoopback() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind: %w", err)
	}
	backlog := 4096
	if b, err := os.ReadFile("/proc/sys/net/core/somaxconn"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			backlog = n
		}
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen: %w", err)
	}
	return fd, nil
}

// execStep sets LISTEN_PID to this process's pid and becomes argv.
func execStep(argv []string) error {
	if err := os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid())); err != nil {
		return err
	}
	return syscall.Exec(argv[0], argv, os.Environ())
}
