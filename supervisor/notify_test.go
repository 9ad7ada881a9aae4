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
	h.declare("alive", helperCmd("notify", "0s", "100ms", ""), "watchdog_secs=3")
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

func (h *harness) rollStatus(id string) []string {
	h.t.Helper()
	out := h.must("command rollstatus " + id)
	return strings.Split(out[0], "\t")
}

func TestRollingRestart(t *testing.T) {
	h := newHarness(t)
	for _, n := range []string{"w1", "w2", "w3", "w4", "w5"} {
		h.declare(n, helperCmd("notify", "100ms", "0", "ok"), "tags=web", "ready=notify", "startwait_secs=5")
	}
	h.must("command start tag web")
	old := map[string]int{}
	for _, n := range []string{"w1", "w2", "w3", "w4", "w5"} {
		old[n] = h.waitState(n, "running").pid
	}
	out := h.must("command rollrestart tag web 2")
	if out[0] != "rolling restart 1: 5 services in batches of 2" {
		t.Fatalf("answer %q", out)
	}
	// Never more than one batch down at once.
	var row []string
	waitFor(t, 20*time.Second, "rolling restart done", func() bool {
		notRunning := 0
		for _, n := range []string{"w1", "w2", "w3", "w4", "w5"} {
			if h.status(n).state != "running" {
				notRunning++
			}
		}
		if notRunning > 2 {
			t.Fatalf("%d services not running at once with batches of 2", notRunning)
		}
		row = h.rollStatus("1")
		return row[1] != "running"
	})
	if row[1] != "done" || row[2] != "5/5" {
		t.Fatalf("rollstatus %q", row)
	}
	for n, pid := range old {
		if st := h.status(n); st.pid == pid || st.state != "running" {
			t.Errorf("%s not restarted: %+v", n, st)
		}
	}
}

func TestRollingRestartStopsAtAFailure(t *testing.T) {
	h := newHarness(t)
	for _, n := range []string{"w1", "w2", "w3"} {
		h.declare(n, helperCmd("notify", "50ms", "0", ""), "tags=web", "ready=notify", "startwait_secs=5", "respawn_max_retries=1")
	}
	h.must("command start tag web")
	for _, n := range []string{"w1", "w2", "w3"} {
		h.waitState(n, "running")
	}
	w3 := h.status("w3").pid
	// w2's new code never gets ready.
	h.must("service w2 cmd=" + helperCmd("notify", "never", "0", ""))
	h.must("service w2 startwait_secs=0.3")
	h.must("command rollrestart tag web")
	var row []string
	waitFor(t, 20*time.Second, "rolling restart to stop", func() bool {
		row = h.rollStatus("1")
		return row[1] != "running"
	})
	if row[1] != "failed" || !strings.Contains(row[3], "w2 failed to start") {
		t.Fatalf("rollstatus %q", row)
	}
	if st := h.status("w3"); st.pid != w3 {
		t.Errorf("w3 was touched after w2 failed")
	}
}
