package supervisor

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func ppidOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	n, _ := strconv.Atoi(f[1])
	return n
}

func (h *harness) proxyStatus(name string) (state string, pid int) {
	h.t.Helper()
	for _, l := range h.must("command proxystatus") {
		f := strings.Split(l, "\t")
		if f[0] == name {
			pid, _ := strconv.Atoi(f[2])
			return f[1], pid
		}
	}
	h.t.Fatalf("proxy %s not listed", name)
	return "", 0
}

func TestProxiedServiceLifecycle(t *testing.T) {
	h := newHarness(t)
	h.must("proxy p cmd=" + proxyWords("proxy"))
	h.must("proxy p service w cmd=" + helperCmd("print", "3"))
	h.must("service w startwait_secs=0.1")
	if st, _ := h.proxyStatus("p"); st != "down" {
		t.Fatalf("proxy before start: %s", st)
	}
	if st := h.status("w"); st.fields[5] != "p!" {
		t.Fatalf("proxy field of a down proxy: %q", st.fields[5])
	}
	h.must("command start service w")
	st := h.waitState("w", "running")
	pstate, ppid := h.proxyStatus("p")
	if pstate != "up" || ppid == 0 {
		t.Fatalf("auto proxy not up: %s %d", pstate, ppid)
	}
	if st.fields[5] != "p" {
		t.Errorf("status proxy field %q", st.fields[5])
	}
	if got := ppidOf(st.pid); got != ppid {
		t.Errorf("worker's parent is %d, want the proxy %d", got, ppid)
	}
	if got := ppidOf(ppid); got != os.Getpid() {
		t.Errorf("proxy's parent is %d, want cfkd %d", got, os.Getpid())
	}
	if out := h.must("command pids service w"); out[0] != "w: "+strconv.Itoa(ppid)+", "+strconv.Itoa(st.pid) {
		t.Errorf("pids: %q", out)
	}
	if d := h.must("command desc service w"); strings.Split(d[0], "\t")[3] != "p" {
		t.Errorf("desc: %q", d)
	}
	waitFor(t, 5*time.Second, "relayed output", func() bool {
		return strings.Contains(h.logText(), strconv.Itoa(st.pid)+" INFO service.w.out - out line 2")
	})
	if !strings.Contains(h.logText(), "proxy.p.out - test proxy up") {
		t.Errorf("the proxy's own stdout is not logged")
	}

	// kill -9 of the worker: respawned through the proxy.
	syscall.Kill(st.pid, syscall.SIGKILL)
	waitFor(t, 5*time.Second, "respawn", func() bool {
		s := h.status("w")
		return s.pid != 0 && s.pid != st.pid
	})
	st2 := h.waitState("w", "running")
	if ppidOf(st2.pid) != ppid {
		t.Errorf("respawned worker not under the same proxy")
	}

	// Down: the auto proxy stops when none of its services is up.
	h.must("command stop service w")
	h.waitState("w", "stopped")
	waitFor(t, 5*time.Second, "auto proxy down", func() bool {
		s, _ := h.proxyStatus("p")
		return s == "down"
	})
	if alive(ppid) || alive(st2.pid) {
		t.Errorf("proxy or worker still alive")
	}
}

func TestProxyDeathFailsAndRespawns(t *testing.T) {
	h := newHarness(t)
	h.must("proxy p cmd=" + proxyWords("proxy"))
	h.must("proxy p service w cmd=" + helperCmd("sleep"))
	h.must("service w startwait_secs=0.1")
	h.must("command start service w")
	st := h.waitState("w", "running")
	_, ppid := h.proxyStatus("p")
	syscall.Kill(ppid, syscall.SIGKILL)
	// The orphaned worker is stopped; the service comes back under a new proxy.
	waitFor(t, 10*time.Second, "old worker gone", func() bool { return !alive(st.pid) })
	var st2 status
	waitFor(t, 10*time.Second, "respawn under a new proxy", func() bool {
		st2 = h.status("w")
		_, p2 := h.proxyStatus("p")
		return st2.state == "running" && p2 != 0 && p2 != ppid && st2.pid != st.pid
	})
	if !strings.Contains(h.logText(), "'w' has stopped: proxy stopped") {
		t.Errorf("log lacks the proxy stop")
	}
}

func TestMisbehavingProxy(t *testing.T) {
	h := newHarness(t)
	h.must("proxy bad cmd=" + proxyWords("badproxy"))
	h.must("proxy bad service w cmd=" + helperCmd("sleep"))
	h.must("service w startwait_secs=0.3")
	h.must("service w respawn_max_retries=1")
	h.must("command start service w")
	st := h.waitState("w", "fatal")
	if !strings.Contains(st.reason, "did not report the start") {
		t.Errorf("reason %q", st.reason)
	}
	text := h.logText()
	if n := strings.Count(text, "bad input from proxy"); n == 0 || n > 200 {
		t.Errorf("%d bad-input lines logged for 10000 bad lines", n)
	}
	// cfkd still answers.
	h.must("command version")
}

func TestNoAutoProxyAndProxyDown(t *testing.T) {
	h := newHarness(t)
	h.must("proxy p cmd=" + proxyWords("proxy"))
	h.must("proxy p noauto=1")
	h.must("proxy p service w cmd=" + helperCmd("sleep"))
	h.must("service w startwait_secs=0.1")
	h.mustFail("command start service w", "Service 'w' cannot start: Proxy is not running, not starting service 'w'")
	h.mustFail("command proxyup nope", "Couldn't find a valid proxy. bailing.")
	h.must("command proxyup p")
	h.must("command start service w")
	st := h.waitState("w", "running")
	h.must("command proxydown p")
	h.waitState("w", "stopped")
	waitFor(t, 5*time.Second, "proxy down", func() bool {
		s, _ := h.proxyStatus("p")
		return s == "down"
	})
	if alive(st.pid) {
		t.Errorf("worker alive after proxydown")
	}
}

func TestProxiedStopKillsAfterStopwait(t *testing.T) {
	h := newHarness(t)
	ready := filepath.Join(h.dir, "ready")
	h.must("proxy p cmd=" + proxyWords("proxy"))
	h.must("proxy p service w cmd=" + helperCmd("ignoreterm", ready))
	h.must("service w startwait_secs=0.1")
	h.must("service w stopwait_secs=0.3")
	h.must("command start service w")
	st := h.waitState("w", "running")
	waitFor(t, 5*time.Second, "TERM ignored", func() bool { return len(readLines(ready)) > 0 })
	h.must("command stop service w")
	st2 := h.waitState("w", "fail")
	if st2.reason != "Received signal 9" || alive(st.pid) {
		t.Fatalf("after stopwait: %+v alive=%v", st2, alive(st.pid))
	}
}

func TestMemPerServiceAndProxy(t *testing.T) {
	h := newHarness(t)
	h.must("proxy p cmd=" + proxyWords("proxy"))
	h.must("proxy p service w cmd=" + helperCmd("sleep"))
	h.declare("direct", helperCmd("sleep"))
	h.declare("down", helperCmd("sleep"))
	h.must("service w startwait_secs=0.1")
	h.must("command start service w")
	h.must("command start service direct")
	h.waitState("w", "running")
	h.waitState("direct", "running")
	rows := map[string][]string{}
	for _, l := range h.must("command mem") {
		f := strings.Split(l, "\t")
		if len(f) != 7 {
			t.Fatalf("mem line %q", l)
		}
		rows[f[0]+" "+f[1]] = f
	}
	for _, k := range []string{"service w", "service direct", "proxy p"} {
		f := rows[k]
		if f == nil {
			t.Fatalf("mem lacks %s: %v", k, rows)
		}
		rss, _ := strconv.Atoi(f[3])
		pss, _ := strconv.Atoi(f[4])
		if rss < 500 || pss <= 0 || pss > rss || f[6] != "1" {
			t.Errorf("%s: rss %d pss %d procs %s", k, rss, pss, f[6])
		}
	}
	if f := rows["service down"]; f == nil || f[2] != "" || f[3] != "0" {
		t.Errorf("down service: %v", f)
	}
}

func TestSlowPreloadDoesNotCountAgainstStartwait(t *testing.T) {
	h := newHarness(t)
	h.must("proxy p cmd=" + proxyWords("slowproxy"))
	h.must("proxy p service w cmd=" + helperCmd("print", "1"))
	h.must("service w startwait_secs=0.3")
	h.must("service w respawn_max_retries=1")
	h.must("command start service w")
	st := h.waitState("w", "running")
	if st.pid == 0 {
		t.Fatalf("no pid")
	}
	// Its first line, written at once, keeps its name.
	waitFor(t, 5*time.Second, "first line logged", func() bool {
		return strings.Contains(h.logText(), "service.w.out - out line 0")
	})
	if strings.Contains(h.logText(), "unknown service") {
		t.Errorf("an early line lost its service name")
	}
}

func TestWorkersOfADeadProxyAreStopped(t *testing.T) {
	h := newHarness(t)
	pids := filepath.Join(h.dir, "pids")
	h.must("proxy p cmd=" + helperCmd("dieproxy", pids))
	h.must("proxy p service w cmd=" + helperCmd("sleep"))
	h.must("service w respawn_on_fail=0")
	h.must("command start service w")
	waitFor(t, 5*time.Second, "the worker's pid", func() bool { return len(readLines(pids)) == 1 })
	worker, _ := strconv.Atoi(readLines(pids)[0])
	h.waitState("w", "fail")
	waitFor(t, 10*time.Second, "the orphaned worker stopped", func() bool { return !alive(worker) })
}

func TestProxiedStartwaitZero(t *testing.T) {
	h := newHarness(t)
	h.must("proxy p cmd=" + proxyWords("proxy"))
	h.must("proxy p service w cmd=" + helperCmd("sleep"))
	h.must("service w startwait_secs=0")
	h.must("command start service w")
	if st := h.waitState("w", "running"); st.pid == 0 {
		t.Fatalf("running without a pid")
	}
}
