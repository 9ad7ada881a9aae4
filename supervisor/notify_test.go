package supervisor

import (
	"strings"
	"testing"
	"time"
)

func TestReadyNotify(t *testing.T) {
	h := newHarness(t)
	h.declare("slow", helperCmd("notify", "400ms", "0", "warming done"), "ready=notify", "startwait_secs=5")
	h.must("command start service slow")
	time.Sleep(150 * time.Millisecond) // well before READY=1: still starting
	if st := h.status("slow"); st.state != "starting" {
		t.Fatalf("before READY=1: %s", st.state)
	}
	st := h.waitState("slow", "running")
	if st.fields[8] != "warming done" {
		t.Errorf("STATUS= not shown: %q", st.fields)
	}
	if d := h.must("command desc service slow"); !strings.HasSuffix(d[0], "\twarming done") {
		t.Errorf("desc lacks STATUS: %q", d)
	}
}

func TestNotReadyInTimeBacksOff(t *testing.T) {
	h := newHarness(t)
	h.declare("mute", helperCmd("notify", "never", "0", ""), "ready=notify", "startwait_secs=0.3", "respawn_max_retries=2")
	h.must("command start service mute")
	st := h.waitState("mute", "fatal")
	if !strings.Contains(st.reason, "did not send READY=1 within startwait_secs") {
		t.Fatalf("reason %q", st.reason)
	}
}

func TestWatchdog(t *testing.T) {
	h := newHarness(t)
	// Pings every 100ms: stays up.
	h.declare("alive", helperCmd("notify", "0s", "100ms", ""), "watchdog_secs=0.5")
	// Never pings: killed and restarted.
	h.declare("silent", helperCmd("notify", "0s", "0", ""), "watchdog_secs=0.4", "startwait_secs=0.1")
	h.must("command start all")
	first := h.waitState("silent", "running").pid
	stAlive := h.waitState("alive", "running")
	var st status
	waitFor(t, 10*time.Second, "watchdog restart", func() bool {
		st = h.status("silent")
		return st.pid != 0 && st.pid != first
	})
	if !strings.Contains(h.logText(), "watchdog: no WATCHDOG=1 for 400ms; killing it") {
		t.Errorf("log lacks the watchdog kill")
	}
	if a := h.status("alive"); a.pid != stAlive.pid {
		t.Errorf("a pinging service was restarted")
	}
}
