package supervisor

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// splitEvents reads a drain helper's notes: "start PID", "ready PID",
// "term PID", "exit PID", in the order they happened.
func splitEvents(path string) []string {
	b, _ := os.ReadFile(path)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestRollingRestartOverlap(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	names := []string{"w1", "w2", "w3"}
	// Each old process lingers 4 s after TERM, like a worker draining its
	// connections: a plain roll would take 3 × 4 s.
	for _, n := range names {
		h.declare(n, helperCmd("drain", filepath.Join(dir, n), "50ms", "4s"),
			"tags=web", "ready=notify", "startwait_secs=10", "stopwait_secs=20")
	}
	h.must("command start tag web")
	old := map[string]int{}
	for _, n := range names {
		old[n] = h.waitState(n, "running").pid
	}
	out := h.must("command rollrestart tag web 1 overlap")
	if out[0] != "rolling restart 1: 3 services in batches of 1, each new process beside the old one" {
		t.Fatalf("answer %q", out)
	}
	var row []string
	waitFor(t, 20*time.Second, "rolling restart done", func() bool {
		row = h.rollStatus("1")
		return row[1] != "running"
	})
	if row[1] != "done" || row[2] != "3/3" {
		t.Fatalf("rollstatus %q", row)
	}
	// Done before the first old process finished its drain: no step
	// waited for one.
	for _, n := range names {
		evs := splitEvents(filepath.Join(dir, n))
		if slices.Contains(evs, "exit "+strconv.Itoa(old[n])) {
			t.Errorf("%s: the roll ended after its old process exited: %q", n, evs)
		}
	}
	for _, n := range names {
		st := h.status(n)
		if st.state != "running" || st.pid == old[n] {
			t.Errorf("%s not restarted: %+v", n, st)
		}
		path := filepath.Join(dir, n)
		waitFor(t, 10*time.Second, n+"'s old process to hear TERM", func() bool {
			return slices.Contains(splitEvents(path), "term "+strconv.Itoa(old[n]))
		})
		evs := splitEvents(path)
		ready, term := slices.Index(evs, "ready "+strconv.Itoa(st.pid)), slices.Index(evs, "term "+strconv.Itoa(old[n]))
		if ready < 0 || term < 0 || ready > term {
			t.Errorf("%s: the old process was not told to stop after the new one was ready: %q", n, evs)
		}
	}
	// The old processes finish their drain and are reaped as such.
	for _, n := range names {
		path := filepath.Join(dir, n)
		waitFor(t, 20*time.Second, n+"'s old process to exit", func() bool {
			return slices.Contains(splitEvents(path), "exit "+strconv.Itoa(old[n]))
		})
	}
	waitFor(t, 10*time.Second, "the exits in the log", func() bool {
		log := h.logText()
		for _, n := range names {
			if !strings.Contains(log, "previous process of "+n+" (pid "+strconv.Itoa(old[n])+") ended: Exited successfuly") {
				return false
			}
		}
		return true
	})
	for _, n := range names {
		if st := h.status(n); st.state != "running" {
			t.Errorf("%s after the old processes left: %+v", n, st)
		}
	}
}

func TestRollingRestartOverlapFailure(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	for _, n := range []string{"w1", "w2", "w3"} {
		h.declare(n, helperCmd("drain", filepath.Join(dir, n), "0s", "0s"),
			"tags=web", "ready=notify", "startwait_secs=10", "respawn_max_retries=1")
	}
	h.must("command start tag web")
	old := map[string]int{}
	for _, n := range []string{"w1", "w2", "w3"} {
		old[n] = h.waitState(n, "running").pid
	}
	// w2's new code never gets ready.
	h.must("service w2 cmd=" + helperCmd("notify", "never", "0", ""))
	h.must("service w2 startwait_secs=0.5")
	h.must("command rollrestart tag web 1 overlap")
	var row []string
	waitFor(t, 20*time.Second, "rolling restart to stop", func() bool {
		row = h.rollStatus("1")
		return row[1] != "running"
	})
	if row[1] != "failed" || !strings.Contains(row[3], "w2 failed to start") {
		t.Fatalf("rollstatus %q", row)
	}
	// w2's old process served until its successor failed, then went.
	waitFor(t, 10*time.Second, "w2's old process to be stopped", func() bool {
		return slices.Contains(splitEvents(filepath.Join(dir, "w2")), "exit "+strconv.Itoa(old["w2"]))
	})
	if st := h.status("w3"); st.pid != old["w3"] || st.state != "running" {
		t.Errorf("w3 was touched after w2 failed: %+v", st)
	}
	if st := h.status("w1"); st.pid == old["w1"] || st.state != "running" {
		t.Errorf("w1 not restarted: %+v", st)
	}
}

func TestRollRestartOverlapWordNeedsABatch(t *testing.T) {
	h := newHarness(t)
	// A service called overlap is still a service.
	h.declare("overlap", helperCmd("sleep"))
	h.must("command start service overlap")
	h.waitState("overlap", "running")
	out := h.must("command rollrestart service overlap")
	if out[0] != "rolling restart 1: 1 services in batches of 1" {
		t.Fatalf("answer %q", out)
	}
}

func TestRollingRestartOverlapNewExitsZero(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	h.declare("w1", helperCmd("drain", filepath.Join(dir, "w1"), "0s", "0s"), "tags=web", "ready=notify", "startwait_secs=10")
	h.must("command start tag web")
	old := h.waitState("w1", "running").pid
	// The new code exits 0 at once, before any READY=1.
	h.must("service w1 cmd=" + helperCmd("exit", "0"))
	h.must("command rollrestart tag web 1 overlap")
	var row []string
	waitFor(t, 20*time.Second, "rolling restart to end", func() bool {
		row = h.rollStatus("1")
		return row[1] != "running"
	})
	if row[1] != "failed" {
		t.Fatalf("rollstatus %q", row)
	}
	// The old process was retired, not left running outside the books.
	waitFor(t, 10*time.Second, "the old process to end", func() bool { return !alive(old) })
}

func TestRollingRestartOverlapCannotStartKeepsOld(t *testing.T) {
	h := newHarness(t)
	h.declare("w1", helperCmd("sleep"), "tags=web", "startwait_secs=0.1")
	h.must("command start tag web")
	old := h.waitState("w1", "running").pid
	h.must("service w1 sockets=nosuch") // cannot start: no such socket
	h.must("command rollrestart tag web 1 overlap")
	var row []string
	waitFor(t, 20*time.Second, "rolling restart to end", func() bool {
		row = h.rollStatus("1")
		return row[1] != "running"
	})
	if row[1] != "failed" || strings.Count(row[3], "cannot start") != 1 || !strings.Contains(row[3], "nosuch") {
		t.Fatalf("rollstatus %q", row)
	}
	if st := h.status("w1"); st.state != "running" || st.pid != old || !alive(old) {
		t.Fatalf("w1 after a start that could not happen: %+v", st)
	}
	// Still the service's: a stop reaches it.
	h.must("command stop service w1")
	waitFor(t, 10*time.Second, "w1 stopped", func() bool { return !alive(old) })
}

func TestUpgradeRefusedWhileOldProcessesDrain(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	h.declare("w1", helperCmd("drain", filepath.Join(dir, "w1"), "0s", "6s"), "tags=web", "ready=notify", "startwait_secs=10", "stopwait_secs=20")
	h.must("command start tag web")
	old := h.waitState("w1", "running").pid
	h.must("command rollrestart tag web 1 overlap")
	waitFor(t, 20*time.Second, "rolling restart done", func() bool { return h.rollStatus("1")[1] == "done" })
	if !alive(old) {
		t.Fatalf("the old process %d is gone already; it should drain for 6 s", old)
	}
	if _, err := h.do("command upgrade"); err == nil || !strings.Contains(err.Error(), "old processes of an overlapping restart are still draining") {
		t.Fatalf("upgrade while an old process drains: %v", err)
	}
}
