package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/controlfreak-go/cfk/console"
)

// These tests run the real cfkd binary, built once in TestMain.
var cfkdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cfkd-test-bin")
	if err != nil {
		panic(err)
	}
	cfkdBin = filepath.Join(dir, "cfkd")
	out, err := exec.Command("go", "build", "-race", "-o", cfkdBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build cfkd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type cfkdProc struct {
	t    *testing.T
	home string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startCfkd runs cfkd in the foreground with a fresh home.
func startCfkd(t *testing.T, args ...string) *cfkdProc {
	t.Helper()
	home := t.TempDir()
	d := &cfkdProc{t: t, home: home, addr: "unix:" + filepath.Join(home, "sock"), done: make(chan struct{})}
	for i, a := range args {
		if a == "-a" && i+1 < len(args) {
			d.addr = args[i+1]
		}
	}
	d.cmd = exec.Command(cfkdBin, append([]string{"--home", home}, args...)...)
	d.cmd.Stderr = os.Stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(10 * time.Second):
				d.cmd.Process.Kill()
			}
		}
	})
	waitFor(t, 10*time.Second, "console socket", func() bool {
		c, err := console.Dial(d.addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return d
}

func (d *cfkdProc) client() *console.Client {
	d.t.Helper()
	c, err := console.Dial(d.addr, 5*time.Second)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { c.Close() })
	return c
}

func (d *cfkdProc) must(c *console.Client, line string) []string {
	d.t.Helper()
	out, err := c.Do(line)
	if err != nil {
		d.t.Fatalf("%q: %v", line, err)
	}
	return out
}

func (d *cfkdProc) wait(timeout time.Duration) {
	d.t.Helper()
	select {
	case <-d.done:
	case <-time.After(timeout):
		d.t.Fatal("cfkd did not exit")
	}
}

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

func pidOf(t *testing.T, d *cfkdProc, c *console.Client, name string) int {
	out := d.must(c, "command status service "+name)
	f := strings.Split(out[0], "\t")
	pid, _ := strconv.Atoi(f[2])
	return pid
}

func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	return !strings.HasPrefix(s[strings.LastIndexByte(s, ')')+2:], "Z")
}

func TestConfigSignalsAndCleanExit(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "cfk.conf")
			os.WriteFile(cfg, []byte("# demo\nservice a cmd=sleep 1000\nservice b cmd=sleep 1000\nservice b tags=x\n\ncommand start all\n"), 0o644)
			d := startCfkd(t, "-c", cfg)
			c := d.client()
			var pids []int
			waitFor(t, 5*time.Second, "both up", func() bool {
				pids = []int{pidOf(t, d, c, "a"), pidOf(t, d, c, "b")}
				return pids[0] != 0 && pids[1] != 0
			})
			d.cmd.Process.Signal(sig)
			d.wait(10 * time.Second)
			if d.err != nil {
				t.Fatalf("cfkd exit: %v", d.err)
			}
			for _, pid := range pids {
				if alive(pid) {
					t.Errorf("service pid %d survived cfkd", pid)
				}
			}
			if _, err := os.Stat(filepath.Join(d.home, "sock")); !os.IsNotExist(err) {
				t.Errorf("socket file left behind")
			}
		})
	}
}

func TestBadConfigRefusesToStart(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "bad.conf")
	os.WriteFile(cfg, []byte("service a cmd=sleep 1\nservice a bogus=1\n"), 0o644)
	out, err := exec.Command(cfkdBin, "--home", t.TempDir(), "-c", cfg).CombinedOutput()
	if err == nil {
		t.Fatal("cfkd started with a bad config")
	}
	if !strings.Contains(string(out), "bad.conf:2") || !strings.Contains(string(out), "invalid property 'bogus'") {
		t.Fatalf("message: %s", out)
	}
}

func TestLockFile(t *testing.T) {
	d := startCfkd(t)
	out, err := exec.Command(cfkdBin, "--home", d.home, "-a", "unix:"+filepath.Join(d.home, "other.sock")).CombinedOutput()
	if err == nil {
		t.Fatal("a second cfkd started on the same home")
	}
	want := fmt.Sprintf("another cfkd (pid %d) is already running", d.cmd.Process.Pid)
	if !strings.Contains(string(out), want) {
		t.Fatalf("second cfkd said %q, want %q", out, want)
	}
	// A stale lock (a dead pid, no holder) is taken over.
	d.must(d.client(), "command shutdown")
	d.wait(10 * time.Second)
	os.WriteFile(filepath.Join(d.home, "lock"), []byte("999999\n"), 0o600)
	d2 := startCfkd2(t, d.home)
	b, _ := os.ReadFile(filepath.Join(d.home, "lock"))
	if strings.TrimSpace(string(b)) != strconv.Itoa(d2.cmd.Process.Pid) {
		t.Fatalf("lock holds %q", b)
	}
}

// startCfkd2 starts cfkd on an existing home.
func startCfkd2(t *testing.T, home string) *cfkdProc {
	d := &cfkdProc{t: t, home: home, addr: "unix:" + filepath.Join(home, "sock"), done: make(chan struct{})}
	d.cmd = exec.Command(cfkdBin, "--home", home)
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() { d.cmd.Process.Signal(syscall.SIGTERM); <-d.done })
	waitFor(t, 10*time.Second, "console socket", func() bool {
		c, err := console.Dial(d.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return d
}

func TestHomeAndSocketArePrivate(t *testing.T) {
	d := startCfkd(t)
	for path, want := range map[string]os.FileMode{d.home: 0o700, filepath.Join(d.home, "sock"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			// t.TempDir made the home; cfkd keeps an existing home's mode.
			if path == d.home {
				continue
			}
			t.Errorf("%s mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	home := filepath.Join(t.TempDir(), "fresh")
	d2 := startCfkd2(t, home)
	fi, _ := os.Stat(d2.home)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("created home has mode %v", fi.Mode().Perm())
	}
}

func TestKill9RespawnsAndLogs(t *testing.T) {
	d := startCfkd(t)
	c := d.client()
	d.must(c, "service s1 cmd=sleep 1000")
	d.must(c, "service s1 startwait_secs=0.1")
	d.must(c, "command start service s1")
	var pid int
	waitFor(t, 5*time.Second, "running", func() bool {
		out := d.must(c, "command status service s1")
		pid = pidOf(t, d, c, "s1")
		return strings.Contains(out[0], "\trunning\t")
	})
	syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, 5*time.Second, "respawn", func() bool {
		p := pidOf(t, d, c, "s1")
		return p != 0 && p != pid
	})
	waitFor(t, 5*time.Second, "log", func() bool {
		b, _ := os.ReadFile(filepath.Join(d.home, "cfkd.log"))
		return strings.Contains(string(b), "child s1 terminated abnormally 9: Received signal 9")
	})
}

func TestUSR1ReopensLog(t *testing.T) {
	d := startCfkd(t)
	logPath := filepath.Join(d.home, "cfkd.log")
	os.Rename(logPath, logPath+".1")
	d.cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, 5*time.Second, "new log file", func() bool {
		b, err := os.ReadFile(logPath)
		return err == nil && strings.Contains(string(b), "log file reopened")
	})
}

func TestDaemonAndTrap(t *testing.T) {
	home := t.TempDir()
	addr := "unix:" + filepath.Join(home, "sock")
	out, err := exec.Command(cfkdBin, "--home", home, "-d", "-t").CombinedOutput()
	if err != nil {
		t.Fatalf("cfkd -d: %v %s", err, out)
	}
	// It is ready when -d returns.
	c, err := console.Dial(addr, time.Second)
	if err != nil {
		t.Fatalf("daemon not serving after -d returned: %v", err)
	}
	defer c.Close()
	b, _ := os.ReadFile(filepath.Join(home, "lock"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if !alive(pid) {
		t.Fatalf("daemon pid %d not alive", pid)
	}
	if sid, _ := syscall.Getpgid(pid); sid != pid {
		t.Errorf("daemon is not its own group leader")
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	// -t: TERM is ignored.
	syscall.Kill(pid, syscall.SIGTERM)
	waitFor(t, 5*time.Second, "the log to show TERM ignored", func() bool {
		b, _ := os.ReadFile(filepath.Join(home, "cfkd.log"))
		return strings.Contains(string(b), "ignoring terminated")
	})
	if _, err := c.Do("command version"); err != nil {
		t.Fatalf("daemon stopped answering after TERM with -t: %v", err)
	}
	// A service started under -t still dies of TERM.
	mustDo(t, c, "service s cmd=sleep 1000")
	mustDo(t, c, "command start service s")
	mustDo(t, c, "command shutdown")
	waitFor(t, 10*time.Second, "daemon exit", func() bool { return !alive(pid) })

	// A daemon that cannot start says why, and -d fails.
	out, err = exec.Command(cfkdBin, "--home", home, "-d", "-a", "unix:/nonexistent/dir/sock").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "/nonexistent/dir/sock") {
		t.Fatalf("failed daemon start: err=%v out=%s", err, out)
	}
}

func mustDo(t *testing.T, c *console.Client, line string) []string {
	t.Helper()
	out, err := c.Do(line)
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return out
}

func TestTCPConsole(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	d := startCfkd(t, "-a", addr)

	// cfkd made a token, readable by its user only.
	tokenPath := filepath.Join(d.home, console.TokenFileName)
	info, err := os.Stat(tokenPath)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", info, err)
	}
	token, err := console.ReadToken(tokenPath)
	if err != nil {
		t.Fatal(err)
	}

	// Without it: refused before anything runs.
	c, err := console.Dial(addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var se *console.ServerError
	if _, err := c.Do("command version"); !errors.As(err, &se) || !strings.Contains(se.Msg, "authentication required") {
		t.Fatalf("no token: %v", err)
	}
	c.Close()
	c, _ = console.Dial(addr, 5*time.Second)
	if err := c.Auth("0123456789abcdef0123"); !errors.As(err, &se) || se.Msg != "authentication failed" {
		t.Fatalf("wrong token: %v", err)
	}
	c.Close()

	// With it.
	c, err = console.Dial(addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(token); err != nil {
		t.Fatal(err)
	}
	if out := mustDo(t, c, "command version"); len(out) != 1 {
		t.Fatalf("version: %q", out)
	}
	for _, want := range []string{"created the console token in " + tokenPath, "console authentication failed from 127.0.0.1:"} {
		waitFor(t, 5*time.Second, "log line "+want, func() bool {
			log, _ := os.ReadFile(filepath.Join(d.home, "cfkd.log"))
			return strings.Contains(string(log), want)
		})
	}
}

func TestTokenFileRefused(t *testing.T) {
	home := t.TempDir()
	bad := filepath.Join(home, "open.token")
	if err := os.WriteFile(bad, []byte("0123456789abcdef0123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(cfkdBin, "--home", home, "-a", "127.0.0.1:0", "--token-file", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "can be read or written by others") {
		t.Fatalf("a world-readable token file was accepted: %v\n%s", err, out)
	}
}

func TestManyClientsAndBadInput(t *testing.T) {
	d := startCfkd(t)
	c := d.client()
	d.must(c, "service s1 cmd=sleep 1000")
	a, _ := console.ParseAddress(d.addr)

	// A client that sends a lot and never reads.
	hog, err := net.Dial(a.Network, a.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hog.Close()
	go func() {
		line := []byte(strings.Repeat("command status\n", 1000))
		for i := 0; i < 200; i++ {
			if _, err := hog.Write(line); err != nil {
				return
			}
		}
	}()
	// A client that disconnects mid-line.
	if half, err := net.Dial(a.Network, a.Addr); err == nil {
		half.Write([]byte("service s1 cmd=sle"))
		half.Close()
	}
	// Garbage and an over-long line.
	g, err := net.Dial(a.Network, a.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	g.Write([]byte("\x00\xff\xfe garbage \x01\n"))
	g.Write([]byte(strings.Repeat("a", 100<<10) + "\ncommand version\n"))
	r := bufio.NewReader(g)
	for i, want := range []string{"ERROR: ", "ERROR: line too long", "0.1.0", "OK"} {
		g.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(l, want) {
			t.Fatalf("answer %d: %q %v, want %q", i, l, err, want)
		}
	}

	// 60 clients at once, each pipelining requests.
	var wg sync.WaitGroup
	errs := make(chan error, 60)
	for i := 0; i < 60; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cl, err := console.Dial(d.addr, 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer cl.Close()
			for j := 0; j < 20; j++ {
				out, err := cl.Do("command status service s1")
				if err != nil || len(out) != 1 || !strings.HasPrefix(out[0], "s1\t") {
					errs <- fmt.Errorf("client %d: %q %v", i, out, err)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Nothing else changed.
	out := d.must(c, "command desc service s1")
	if !strings.Contains(out[0], "\tsleep 1000") {
		t.Fatalf("service changed: %q", out)
	}
}

func TestServicesGetOnlyTheirFds(t *testing.T) {
	d := startCfkd(t)
	c := d.client()
	d.must(c, "socket web host=127.0.0.1")
	d.must(c, "socket web service=0")
	d.must(c, "socket other host=127.0.0.1")
	d.must(c, "socket other service=0")
	d.must(c, "command bind other")
	d.must(c, "service plain cmd=sleep 1000")
	d.must(c, "service withsock cmd=sleep 1000")
	d.must(c, "service withsock sockets=web")
	d.must(c, "command start all")
	for name, want := range map[string]int{"plain": 3, "withsock": 4} {
		// sleep may open locale files for a moment after exec: poll
		// until the set is what it keeps.
		var got []string
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			pid := pidOf(t, d, c, name)
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
			got = got[:0]
			for _, f := range fds {
				target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, f.Name()))
				got = append(got, f.Name()+"="+target)
			}
			if strings.TrimSpace(string(comm)) == "sleep" && len(got) == want {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if len(got) != want {
			t.Errorf("%s has fds %v, want %d (console, log, lock, other sockets must not leak)", name, got, want)
		}
	}
}

func TestUpgradeInPlace(t *testing.T) {
	d := startCfkd(t)
	c := d.client()
	for _, l := range []string{
		"socket web host=127.0.0.1", "socket web service=0",
		"service a cmd=sleep 1000", "service a sockets=web", "service a startwait_secs=0.1",
		"service b cmd=/bin/sh -c 'while true; do echo tick; sleep 0.05; done'", "service b startwait_secs=0.1",
		"service c cmd=sleep 1000", "service c startwait_secs=30", // still starting: its timer crosses
		// Its own log file: the pipe and the file's settings cross.
		"service d cmd=/bin/sh -c 'while true; do echo dtick; sleep 0.05; done'", "service d log_file=d.log", "service d log_max_bytes=2K",
		"command start all",
	} {
		d.must(c, l)
	}
	waitFor(t, 5*time.Second, "running", func() bool {
		a := d.must(c, "command status service a")
		b := d.must(c, "command status service b")
		return strings.Contains(a[0], "\trunning\t") && strings.Contains(b[0], "\trunning\t")
	})
	before := map[string]string{}
	for _, n := range []string{"a", "b", "c"} {
		before[n] = d.must(c, "command status service "+n)[0]
	}
	sockBefore := d.must(c, "command sockets")
	addr := strings.Split(sockBefore[0], "\t")[1]

	// A binary that is no cfkd, or missing: refused, nothing changes.
	for bin, want := range map[string]string{"/bin/true": "it said nothing", "/nonexistent": "no such file"} {
		_, err := c.Do("command upgrade " + bin)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("upgrade to %s: %v", bin, err)
		}
	}

	// The real thing: the connection closes, the same socket serves again.
	if _, err := c.Do("command upgrade"); err == nil {
		t.Fatal("upgrade answered instead of re-executing")
	}
	var c2 *console.Client
	waitFor(t, 10*time.Second, "the console again", func() bool {
		cl, err := console.Dial(d.addr, time.Second)
		if err != nil {
			return false
		}
		out, err := cl.Do("command upgrades")
		if err != nil || len(out) != 1 || out[0] != "1" {
			cl.Close()
			return false
		}
		c2 = cl
		return true
	})
	defer c2.Close()
	if !alive(d.cmd.Process.Pid) {
		t.Fatal("cfkd's pid changed")
	}
	for _, n := range []string{"a", "b", "c"} {
		if got := mustDo(t, c2, "command status service "+n)[0]; got != before[n] {
			t.Errorf("%s changed across the upgrade:\n%q\n%q", n, before[n], got)
		}
	}
	if got := mustDo(t, c2, "command sockets"); got[0] != sockBefore[0] {
		t.Errorf("socket changed: %q -> %q", sockBefore, got)
	}
	// The socket never closed: it still accepts (into a's backlog).
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err != nil {
		t.Errorf("socket closed by the upgrade: %v", err)
	} else {
		conn.Close()
	}
	// Output of a service started before still reaches the log.
	logPath := filepath.Join(d.home, "cfkd.log")
	mark, _ := os.ReadFile(logPath)
	waitFor(t, 5*time.Second, "output after the upgrade", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b[len(mark):]), "service.b.out - tick")
	})
	// d's lines still go to its own file, still rotated at 2 KiB.
	dLog := filepath.Join(d.home, "d.log")
	waitFor(t, 10*time.Second, "d's file rotated after the upgrade", func() bool {
		info, err := os.Stat(dLog + ".1")
		return err == nil && info.ModTime().After(time.Now().Add(-2*time.Second))
	})
	if b, _ := os.ReadFile(logPath); strings.Contains(string(b), "service.d.out") {
		t.Errorf("d's output reached cfkd's log")
	}
	// Exits are still seen: kill -9 a, it comes back.
	pa := pidOf(t, d, c2, "a")
	syscall.Kill(pa, syscall.SIGKILL)
	waitFor(t, 5*time.Second, "respawn after upgrade", func() bool {
		p := pidOf(t, d, c2, "a")
		return p != 0 && p != pa
	})
	// c's start timer crossed the upgrade: it is still starting.
	if out := mustDo(t, c2, "command status service c"); !strings.Contains(out[0], "\tstarting\t") {
		t.Errorf("c: %q", out)
	}
	mustDo(t, c2, "command shutdown")
	d.wait(15 * time.Second)
}

func TestLogFileCommand(t *testing.T) {
	d := startCfkd(t)
	c := d.client()
	out := mustDo(t, c, "command logfile")
	if len(out) != 1 || out[0] != filepath.Join(d.home, "cfkd.log") {
		t.Fatalf("command logfile: %q, want %s", out, filepath.Join(d.home, "cfkd.log"))
	}
}

// freeTCPAddr is a loopback address nobody listens on (a moment ago).
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestDaemonWithRelativePaths(t *testing.T) {
	dir := t.TempDir()
	addr := freeTCPAddr(t)
	tokName := fmt.Sprintf("tok-%d", os.Getpid())
	cmd := exec.Command(cfkdBin, "--home", "home", "-a", addr, "--token-file", tokName, "-d")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cfkd -d: %v %s", err, out)
	}
	if want := "created the console token in " + filepath.Join(dir, tokName); !strings.Contains(string(out), want) {
		t.Errorf("cfkd -d said %q, want %q", out, want)
	}
	if _, err := os.Stat("/" + tokName); err == nil {
		os.Remove("/" + tokName)
		t.Errorf("the daemon made its token in / instead of %s", dir)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "home", "lock"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 {
		t.Fatalf("no daemon pid in %s/home/lock (its home is not where it was named)", dir)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	token, err := console.ReadToken(filepath.Join(dir, tokName))
	if err != nil {
		t.Fatal(err)
	}
	c, err := console.Dial(addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(token); err != nil {
		t.Fatalf("the daemon does not take the token in %s: %v", tokName, err)
	}
	mustDo(t, c, "command shutdown")
	waitFor(t, 10*time.Second, "the daemon to exit", func() bool { return !alive(pid) })
}

func TestUpgradeKeepsTheTokenWhenItsFileChanged(t *testing.T) {
	addr := freeTCPAddr(t)
	d := startCfkd(t, "-a", addr)
	tokPath := filepath.Join(d.home, console.TokenFileName)
	token, err := console.ReadToken(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := console.Dial(addr, 5*time.Second)
	if err := c.Auth(token); err != nil {
		t.Fatal(err)
	}
	mustDo(t, c, "service a cmd=sleep 1000")
	mustDo(t, c, "command start service a")
	// The file is now unacceptable (readable by the group).
	os.Chmod(tokPath, 0o640)
	if _, err := c.Do("command upgrade"); err == nil {
		t.Fatal("upgrade answered instead of re-executing")
	}
	c.Close()
	waitFor(t, 10*time.Second, "the upgraded console, with the same token", func() bool {
		c2, err := console.Dial(addr, time.Second)
		if err != nil {
			return false
		}
		defer c2.Close()
		if c2.Auth(token) != nil {
			return false
		}
		out, err := c2.Do("command upgrades")
		return err == nil && len(out) == 1 && out[0] == "1"
	})
	if !alive(d.cmd.Process.Pid) {
		t.Fatal("cfkd died in the upgrade")
	}
}

// TestLogFileNamingCfkdLog: a service whose log_file is cfkd's own log
// writes there as any service does; nothing rotates cfkd's log away.
func TestLogFileNamingCfkdLog(t *testing.T) {
	d := startCfkd(t)
	c := d.client()
	for _, l := range []string{
		"service s cmd=/bin/sh -c 'i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done; sleep 1000'",
		"service s log_file=cfkd.log", "service s log_max_bytes=1K", "service s log_keep=1",
		"service s startwait_secs=0.1", "command start service s",
	} {
		d.must(c, l)
	}
	logPath := filepath.Join(d.home, "cfkd.log")
	waitFor(t, 10*time.Second, "s's lines in cfkd.log", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "service.s.out - line 199")
	})
	if _, err := os.Stat(logPath + ".1"); err == nil {
		t.Fatalf("cfkd's log was rotated by a service's log_file")
	}
	d.must(c, "command version")
	if out := d.must(c, "command logfile s"); out[0] != logPath {
		t.Errorf("logfile s: %q", out)
	}
}
