package supervisor

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// The test binary doubles as every child the tests need: run as
// `<testbin> cfkhelper MODE ARGS...` it becomes a small program instead of
// running the tests (the os/exec tests' pattern).
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "cfkhelper" {
		helper(os.Args[2], os.Args[3:])
		return
	}
	if err := CloseInheritedOnExec(); err != nil {
		fmt.Fprintln(os.Stderr, "cloexec:", err)
		os.Exit(1)
	}
	if err := BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, "subreaper:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func helper(mode string, args []string) {
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	switch mode {
	case "sleep":
		select {}
	case "exit":
		n, _ := strconv.Atoi(arg(0))
		os.Exit(n)
	case "count": // count FILE CODE DELAY: note the start, wait, exit CODE
		appendLine(arg(0), strconv.Itoa(os.Getpid()))
		code, _ := strconv.Atoi(arg(1))
		d, _ := time.ParseDuration(arg(2))
		time.Sleep(d)
		os.Exit(code)
	case "ignoreterm":
		signal.Ignore(syscall.SIGTERM)
		appendLine(arg(0), "ready")
		select {}
	case "print": // print N: N lines on stdout and on stderr
		n, _ := strconv.Atoi(arg(0))
		for i := 0; i < n; i++ {
			fmt.Printf("out line %d\n", i)
			fmt.Fprintf(os.Stderr, "err line %d\n", i)
		}
		select {}
	case "longline": // longline N: one line of N bytes of 'x', then "tail"
		n, _ := strconv.Atoi(arg(0))
		os.Stdout.WriteString(strings.Repeat("x", n) + "\ntail\n")
		select {}
	case "env": // env FILE: write the environment to FILE
		os.WriteFile(arg(0)+".tmp", []byte(strings.Join(os.Environ(), "\n")), 0o644)
		os.Rename(arg(0)+".tmp", arg(0))
		select {}
	case "grandchild": // grandchild FILE MODE: start a child in our group, write its pid
		self, _ := os.Executable()
		pid, err := syscall.ForkExec(self, []string{self, "cfkhelper", arg(1)}, &syscall.ProcAttr{
			Files: []uintptr{0, 1, 2},
		})
		if err != nil {
			os.Exit(9)
		}
		appendLine(arg(0), strconv.Itoa(pid))
		if arg(2) == "exit" {
			os.Exit(0)
		}
		select {}
	case "accept": // accept on fd 3 (or stdin with "stdin"), answer our pid, close
		fd := 3
		if arg(0) == "stdin" {
			fd = 0
		}
		l, err := net.FileListener(os.NewFile(uintptr(fd), "listener"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "no listener:", err)
			os.Exit(3)
		}
		for {
			c, err := l.Accept()
			if err != nil {
				os.Exit(4)
			}
			fmt.Fprintf(c, "%d\n", os.Getpid())
			c.Close()
		}
	case "drain": // drain FILE READY_AFTER LINGER: READY=1, and on TERM linger before exiting; each step noted in FILE
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		pid := strconv.Itoa(os.Getpid())
		appendLine(arg(0), "start "+pid)
		d, _ := time.ParseDuration(arg(1))
		time.Sleep(d)
		appendLine(arg(0), "ready "+pid) // first: cfkd may act on READY=1 at once
		daemon.SdNotify(false, daemon.SdNotifyReady)
		<-term
		appendLine(arg(0), "term "+pid)
		linger, _ := time.ParseDuration(arg(2))
		time.Sleep(linger)
		appendLine(arg(0), "exit "+pid)
		os.Exit(0)
	case "notify": // notify READY_AFTER WATCHDOG_EVERY STATUS: sd_notify with go-systemd
		readyAfter, _ := time.ParseDuration(arg(0))
		every, _ := time.ParseDuration(arg(1))
		time.Sleep(readyAfter)
		if arg(0) != "never" {
			if ok, err := daemon.SdNotify(false, daemon.SdNotifyReady+"\nSTATUS="+arg(2)); !ok || err != nil {
				fmt.Fprintln(os.Stderr, "sdnotify failed:", ok, err)
				os.Exit(6)
			}
		}
		for every > 0 {
			time.Sleep(every)
			daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		}
		select {}
	case "proxy":
		testProxy(false, 0)
	case "slowproxy":
		testProxy(false, 1500*time.Millisecond)
	case "dieproxy": // dieproxy FILE: note the pid of the first worker, then die
		testProxy(false, 0, arg(0))
	case "badproxy":
		testProxy(true, 0)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
		os.Exit(2)
	}
}

func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		os.Exit(8)
	}
	f.WriteString(line + "\n")
	f.Close()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
