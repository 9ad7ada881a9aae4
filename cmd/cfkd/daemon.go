package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// daemonEnv marks the detached copy of cfkd; readyFd is where it tells
// the parent it is serving, so `cfkd -d` fails loudly when start-up fails.
const (
	daemonEnv = "_CFKD_DAEMON"
	readyFd   = 3
)

func isDaemonChild() bool { return os.Getenv(daemonEnv) == "1" }

// detach re-executes cfkd with args (every path absolute) in a new
// session with stdio on /dev/null and / as its directory, waits until it
// says it is ready, and returns.
func detach(args []string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	p, err := os.StartProcess(exe, append([]string{os.Args[0]}, args...), &os.ProcAttr{
		Dir:   "/",
		Env:   append(os.Environ(), daemonEnv+"=1"),
		Files: []*os.File{null, null, null, w},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	w.Close()
	null.Close()
	if err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	line, _ := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "ok" {
		_ = p.Release()
		return nil
	}
	if line == "" {
		line = "the daemon exited during start-up"
	}
	return errors.New(line)
}

// reporter tells a waiting `cfkd -d` parent how start-up went.
type reporter struct{ f *os.File }

func readyReporter() *reporter {
	if !isDaemonChild() {
		return &reporter{}
	}
	os.Unsetenv(daemonEnv)
	// Inherited without close-on-exec: set it before any service can be
	// forked, so none inherits the pipe.
	syscall.CloseOnExec(readyFd)
	return &reporter{f: os.NewFile(readyFd, "ready")}
}

func (r *reporter) ok() { r.say("ok") }

func (r *reporter) fail(err error) { r.say(err.Error()) }

func (r *reporter) say(msg string) {
	if r.f == nil {
		return
	}
	fmt.Fprintln(r.f, strings.ReplaceAll(msg, "\n", " "))
	r.f.Close()
	r.f = nil
}
