package benchkit

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Start puts the child in a group of its own; Stop ends it, and the log
// gets its output with the environment Spec asked for.
func TestStartStop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/nonexistent")
	dir := t.TempDir()
	log := filepath.Join(dir, "out")
	c, err := Start(Spec{Dir: dir, Log: log, Env: []string{"BENCHKIT_TEST=1"}},
		"/bin/sh", "-c", `echo "pwd=$(pwd) notify=${NOTIFY_SOCKET:-none} test=$BENCHKIT_TEST"; exec sleep 30`)
	if err != nil {
		t.Fatal(err)
	}
	if pgid, err := syscall.Getpgid(c.Pid()); err != nil || pgid != c.Pid() {
		t.Errorf("pgid = %d, %v; want the child's own pid %d", pgid, err, c.Pid())
	}
	if !WaitFor(5*time.Second, 10*time.Millisecond, func() bool {
		b, _ := os.ReadFile(log)
		return strings.Contains(string(b), "\n")
	}) {
		t.Fatal("no output in the log")
	}
	b, _ := os.ReadFile(log)
	if got, want := strings.TrimSpace(string(b)), "pwd="+dir+" notify=none test=1"; got != want {
		t.Errorf("child printed %q, want %q", got, want)
	}
	if !c.Running() {
		t.Fatal("not running before Stop")
	}
	c.Stop(syscall.SIGTERM, 5*time.Second)
	if c.Running() {
		t.Error("running after Stop")
	}
}

// A child that ignores the signal is KILLed after the grace.
func TestStopKillsAfterGrace(t *testing.T) {
	c, err := Start(Spec{Log: filepath.Join(t.TempDir(), "out")},
		"/bin/sh", "-c", `trap "" TERM; while :; do sleep 0.05; done`)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the shell set its trap
	t0 := time.Now()
	c.Stop(syscall.SIGTERM, 200*time.Millisecond)
	if d := time.Since(t0); d < 200*time.Millisecond {
		t.Errorf("stopped after %v, before the grace", d)
	}
	if err := c.Wait(time.Second); err != nil {
		t.Error(err)
	}
}

func TestKeepManagerEnv(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/nonexistent")
	log := filepath.Join(t.TempDir(), "out")
	c, err := Start(Spec{Log: log, KeepManagerEnv: true}, "/bin/sh", "-c", `echo "$NOTIFY_SOCKET"`)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(log); strings.TrimSpace(string(b)) != "/nonexistent" {
		t.Errorf("child saw NOTIFY_SOCKET=%q, want it passed on", b)
	}
}

func TestCleanEnv(t *testing.T) {
	t.Setenv("LISTEN_FDS", "1")
	t.Setenv("BENCHKIT_KEEP", "yes")
	env := strings.Join(CleanEnv(), "\n")
	if strings.Contains(env, "LISTEN_FDS=") {
		t.Error("CleanEnv kept LISTEN_FDS")
	}
	if !strings.Contains(env, "BENCHKIT_KEEP=yes") {
		t.Error("CleanEnv dropped BENCHKIT_KEEP")
	}
}

func TestWaitFor(t *testing.T) {
	t0 := time.Now()
	if WaitFor(50*time.Millisecond, time.Second, func() bool { return false }) {
		t.Error("WaitFor(false) = true")
	}
	// The step is longer than the timeout: the last sleep ends at the
	// deadline, not a step later.
	if d := time.Since(t0); d < 50*time.Millisecond || d > 900*time.Millisecond {
		t.Errorf("WaitFor(50ms) took %v", d)
	}
	n := 0
	if !WaitFor(time.Second, time.Millisecond, func() bool { n++; return n == 3 }) || n != 3 {
		t.Errorf("WaitFor stopped after %d checks", n)
	}
}

func TestListed(t *testing.T) {
	for _, tc := range []struct {
		list, word string
		want       bool
	}{
		{"restart,big,upgrade", "big", true},
		{"restart, upgrade", "upgrade", true},
		{"restart,bigger", "big", false},
		{"", "big", false},
	} {
		if got := Listed(tc.list, tc.word); got != tc.want {
			t.Errorf("Listed(%q, %q) = %v", tc.list, tc.word, got)
		}
	}
}
