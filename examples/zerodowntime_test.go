package examples

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The zero-downtime operations of the README, each under 20 s of real load
// straight at cfkd's socket, with no proxy in front to retry for us: a
// rolling restart of every worker, scaling the pool up and down, and
// re-executing cfkd in place. The claim is the strongest one: zero socket
// errors (connect, read, write, timeout) and zero non-2xx answers.
//
// Why that holds without a proxy: the listening socket stays open in cfkd
// throughout, so a connection that arrives while no worker accepts waits in
// the kernel's accept queue instead of being refused; and a worker stopped
// by TERM answers every connection it has accepted, and ends its keep-alive
// connections by answering their next request with "Connection: close"
// (package drain), so no request is ever lost with a worker.
//
// The load is two wrk at once, each half of the usual threads and
// connections: one sends "Connection: close", so every request is a fresh
// accept on the shared socket; the other keeps its connections alive, so
// every stop has keep-alive connections to end cleanly.

const (
	zdLoadDuration = 20 * time.Second
	// zdTail is how much load follows the last operation, so that the
	// processes it started serve under load before wrk stops.
	zdTail = 3 * time.Second
	// zdPoolSize is the pool every test starts with: web001..web004.
	zdPoolSize = 4
	// zdStartDeadline is the pool's startwait_secs: under ready=notify the
	// deadline for READY=1, which the worker sends within milliseconds.
	zdStartDeadline = "5"
	// zdUpgrades in-place upgrades, upgradeEvery apart.
	zdUpgrades   = 6
	upgradeEvery = 2 * time.Second
	// cfkctlTimeout bounds one cfkctl run (a rolling restart, a scale).
	cfkctlTimeout = 30 * time.Second
)

// zdPool declares the pool web001..web00N, tagged web, on one TCP socket:
// the first half take it as fd 3 (sockets=), the rest as stdin
// (tie_stdin_to=), and all say READY=1 (ready=notify), so that a rolling
// restart waits for exactly as long as a worker takes to start. It starts
// them, and returns the config and the names.
func zdPool(n int) (string, []string) {
	var b strings.Builder
	b.WriteString(tcpSocket("web"))
	names := webNames(n)
	for i, name := range names {
		attach := "sockets=web"
		if i >= n/2 {
			attach = "tie_stdin_to=web"
		}
		fmt.Fprintf(&b, "service %s cmd=%s\n", name, jsonCmd(bin.worker))
		fmt.Fprintf(&b, "service %s %s\n", name, attach)
		fmt.Fprintf(&b, "service %s tags=web\n", name)
		fmt.Fprintf(&b, "service %s ready=notify\n", name)
		fmt.Fprintf(&b, "service %s startwait_secs=%s\n", name, zdStartDeadline)
	}
	b.WriteString("command start tag web\n")
	return b.String(), names
}

// zdEnv is the environment of these tests' cfkd. cfkd is built with the
// race detector, whose runtime sleeps atexit_sleep_ms (1 s by default)
// when a program returns from main; `cfkd --upgrade-check`, which every
// upgrade runs and waits for, does. Without this each upgrade would take a
// second more than a plain cfkd's (about 10-20 ms).
func zdEnv() []string {
	gorace := "atexit_sleep_ms=0"
	if v := os.Getenv("GORACE"); v != "" {
		gorace = v + " " + gorace
	}
	return []string{"GORACE=" + gorace}
}

// webNames is web001..web00N, the names `command scale` gives the pool.
func webNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("web%03d", i+1)
	}
	return names
}

// cfkctl runs cfkctl against d and returns what it printed; a non-zero
// exit fails the test.
func (d *cfkd) cfkctl(args ...string) string {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cfkctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.cfkctl, append([]string{"-a", d.addr}, args...)...)
	cmd.Env = append(cleanEnv(os.Environ()), "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		d.t.Fatalf("cfkctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// requireQuietLog fails the test if cfkd logged an error of its own (a
// worker that failed, a start that timed out, a rolling restart that
// stopped). The workers' stderr is logged as ERROR service.NAME.err and is
// not cfkd's.
func (d *cfkd) requireQuietLog() {
	d.t.Helper()
	b, err := os.ReadFile(filepath.Join(d.home, "cfkd.log"))
	if err != nil {
		d.t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, " ERROR cfkd ") || strings.Contains(line, "abnormally") {
			d.t.Errorf("cfkd.log: %s", line)
		}
	}
}

// twoLoads is the load of these tests: a wrk opening a connection per
// request and a wrk keeping its connections alive, both for
// zdLoadDuration.
type twoLoads struct {
	t           *testing.T
	fresh, kept *wrkRun
	end         time.Time
	opStart     time.Time     // when the current operation began
	longest     time.Duration // the longest operation so far
}

func startTwoLoads(t *testing.T, url string) *twoLoads {
	t.Helper()
	l := &twoLoads{t: t, end: time.Now().Add(zdLoadDuration)}
	l.fresh = startWrkWith(t, url, zdLoadDuration, wrkThreads/2, wrkConns/2, "-H", "Connection: close")
	l.kept = startWrkWith(t, url, zdLoadDuration, wrkThreads/2, wrkConns/2)
	return l
}

// left is how long the load still runs.
func (l *twoLoads) left() time.Duration { return time.Until(l.end) }

// another is called before each operation (a rolling restart, a cycle of
// scaling) and reports whether there is time for it: one as long as the
// longest so far must still end zdTail before the load does, so that the
// processes it leaves serve under load.
func (l *twoLoads) another() bool {
	now := time.Now()
	if !l.opStart.IsZero() {
		l.longest = max(l.longest, now.Sub(l.opStart))
	}
	l.opStart = now
	return l.left() > zdTail+l.longest
}

// wait lets both wrk finish, requires them clean (no error of any kind,
// every answer naming a pid), and returns their figures and the answers
// per pid of both.
func (l *twoLoads) wait() (fresh, kept wrkResult, perPid map[int]int) {
	l.t.Helper()
	fresh = l.fresh.wait(l.left() + stopTimeout)
	kept = l.kept.wait(l.left() + stopTimeout)
	requireClean(l.t, fresh)
	requireClean(l.t, kept)
	perPid = map[int]int{}
	for _, r := range []wrkResult{fresh, kept} {
		for p, n := range r.pids {
			perPid[p] += n
		}
	}
	l.t.Logf("figures: Connection: close %d requests (%.0f req/s), keep-alive %d requests (%.0f req/s), %d pids answered, 0 errors",
		fresh.requests, fresh.perSec, kept.requests, kept.perSec, len(perPid))
	return fresh, kept, perPid
}

// requireServed fails the test unless each of pids answered some request.
func requireServed(t *testing.T, perPid map[int]int, pids []int) {
	t.Helper()
	for _, p := range pids {
		if perPid[p] == 0 {
			t.Errorf("pid %d answered no request under load (answers per pid: %v)", p, perPid)
		}
	}
}

var (
	rollStarted = regexp.MustCompile(`(?m)^rolling restart (\d+): `)
	upgraded    = regexp.MustCompile(`(?m)^cfkd upgraded in place \(upgrade (\d+)\); the console answered again after (\d+) ms$`)
)

// rollRestart runs `cfkctl restart @web --rolling --batch K` (with
// --overlap when asked), which returns once the rolling restart is done
// and fails the test otherwise, and checks cfkd's rollstatus agrees.
func (d *cfkd) rollRestart(batch, total int, overlap bool) {
	d.t.Helper()
	args := []string{"restart", "@web", "--rolling", "--batch", strconv.Itoa(batch)}
	if overlap {
		args = append(args, "--overlap")
	}
	out := d.cfkctl(args...)
	m := rollStarted.FindStringSubmatch(out)
	if m == nil {
		d.t.Fatalf("cfkctl restart --rolling printed no operation:\n%s", out)
	}
	st := d.must("command rollstatus " + m[1])
	want := fmt.Sprintf("%s\tdone\t%d/%d\t", m[1], total, total)
	if len(st) != 1 || !strings.HasPrefix(st[0], want) {
		d.t.Fatalf("rollstatus %s: %q, want %q...", m[1], st, want)
	}
}

// requireReplaced fails the test unless every service runs under a new
// pid and every old process is gone — at once, or, after an overlapping
// restart, whose old processes drain beside the new ones, within a
// deadline.
func requireReplaced(t *testing.T, names []string, old, now []int, overlap bool) {
	t.Helper()
	for i, name := range names {
		if now[i] == old[i] {
			t.Fatalf("%s still runs as pid %d", name, old[i])
		}
		if overlap {
			waitFor(t, 15*time.Second, fmt.Sprintf("%s's old process %d to end", name, old[i]), func() bool { return !alive(old[i]) })
		} else if alive(old[i]) {
			t.Fatalf("%s's old process %d is still alive after its restart", name, old[i])
		}
	}
}

// TestRollingRestartUnderLoad: rolling restarts of the whole pool, one
// after the other for as long as the load lasts, in batches of 1, 2 and 4
// (the whole pool at once: then no worker accepts for a few milliseconds
// and connections wait in the accept queue), plain and overlapping in
// turn. After each, every worker
// runs under a new pid and its old process is gone, and cfkd reports the
// operation done. wrk sees no error at all.
func TestRollingRestartUnderLoad(t *testing.T) {
	requireTool(t, "wrk")
	config, names := zdPool(zdPoolSize)
	d := startCfkd(t, config, zdEnv())
	pids := d.waitRunning(names...)
	load := startTwoLoads(t, "http://"+d.tcpAddr("web")+"/")

	time.Sleep(loadMargin) // load, not a wait for a state
	batches := []int{1, 2, zdPoolSize}
	rolls := 0
	var leftAfter time.Duration // load left once the last roll was done
	for ; load.another(); rolls++ {
		overlap := (rolls/len(batches))%2 == 1
		d.rollRestart(batches[rolls%len(batches)], len(names), overlap)
		now := d.waitRunning(names...)
		requireReplaced(t, names, pids, now, overlap)
		pids = now
		leftAfter = load.left()
	}
	_, _, perPid := load.wait()
	if rolls < 2*len(batches) {
		t.Fatalf("only %d rolling restarts in %v", rolls, zdLoadDuration)
	}
	if leftAfter >= zdTail {
		requireServed(t, perPid, pids)
	} else {
		// A stalled machine ate the tail another() had left: the last
		// roll's processes came up as the load ended.
		t.Logf("the last roll ended %v before the load did; its processes are not required to have served wrk", leftAfter)
	}
	d.requireQuietLog()
	t.Logf("%d rolling restarts (batches of 1, 2, %d in turn, plain then overlapping), %d worker processes replaced; the longest took %v",
		rolls, zdPoolSize, rolls*len(names), load.longest.Round(time.Millisecond))
}

// TestScaleUnderLoad: the pool goes 4 → 8 → 2 → 4, again and again for as
// long as the load lasts. After each step exactly the expected services
// exist and run, every one of them answers (a side client, which must
// never fail either), the members kept are untouched, and the removed
// ones' processes are gone when cfkctl returns. wrk sees no error at all.
func TestScaleUnderLoad(t *testing.T) {
	requireTool(t, "wrk")
	config, names := zdPool(zdPoolSize)
	d := startCfkd(t, config, zdEnv())
	pidOf := map[string]int{}
	for i, p := range d.waitRunning(names...) {
		pidOf[names[i]] = p
	}
	addr := d.tcpAddr("web")
	side := httpClient("tcp", addr)
	load := startTwoLoads(t, "http://"+addr+"/")

	time.Sleep(loadMargin) // load, not a wait for a state
	steps := []int{8, 2, zdPoolSize}
	cycles, ran := 0, map[int]bool{}
	var pids, before []int
	var leftAfter time.Duration // load left once the last step's processes had answered
	for ; load.another(); cycles++ {
		for _, n := range steps {
			before = pids
			began := time.Now()
			out := d.cfkctl("scale", "@web", strconv.Itoa(n))
			scaled := time.Since(began)
			if !strings.HasPrefix(out, "scaled web from ") {
				t.Fatalf("cfkctl scale @web %d: %q", n, out)
			}
			want := webNames(n)
			if got := d.must("command list"); !slices.Equal(got, want) {
				t.Fatalf("after scale to %d the services are %v", n, got)
			}
			for name, p := range pidOf {
				if !slices.Contains(want, name) && alive(p) {
					t.Fatalf("%s was removed but its process %d is alive", name, p)
				}
			}
			pids = d.waitRunning(want...)
			next := map[string]int{}
			for i, name := range want {
				if old, ok := pidOf[name]; ok && old != pids[i] {
					t.Fatalf("scaling to %d restarted %s (pid %d, was %d)", n, name, pids[i], old)
				}
				next[name] = pids[i]
				ran[pids[i]] = true
			}
			pidOf = next
			pidsServing(t, side, pids)
			leftAfter = load.left()
			if took := time.Since(began); took > time.Second {
				t.Logf("a slow step: scale to %d took %v, and %v until every process had answered", n, scaled, took)
			}
		}
	}
	_, _, perPid := load.wait()
	if leftAfter < zdTail {
		// The machine stalled in the last step (another() had predicted
		// enough time): its new processes may have come up as the load
		// ended. Every process that had the load's tail must have served.
		t.Logf("the last step ended %v before the load did; its new processes are not required to have served wrk", leftAfter)
		var kept []int
		for _, p := range pids {
			if slices.Contains(before, p) {
				kept = append(kept, p)
			}
		}
		pids = kept
	}
	requireServed(t, perPid, pids)
	d.requireQuietLog()
	t.Logf("%d cycles of 4 → 8 → 2 → 4, the longest %v; %d worker processes ran, %d of them answered wrk",
		cycles, load.longest.Round(time.Millisecond), len(ran), len(perPid))
}

// TestUpgradeUnderLoad: cfkd re-executes itself in place several times
// under load. Each time cfkctl sees the console answer again (it prints
// after how long), cfkd keeps its pid, every worker keeps its pid and
// stays cfkd's child and running, the socket keeps its address, and
// `command upgrades` counts one more. Then a rolling restart shows that
// the upgraded cfkd still supervises: it stops, reaps and starts the
// workers. wrk sees no error at all.
func TestUpgradeUnderLoad(t *testing.T) {
	requireTool(t, "wrk")
	config, names := zdPool(zdPoolSize)
	d := startCfkd(t, config, zdEnv())
	pids := d.waitRunning(names...)
	cfkdPid := d.p.cmd.Process.Pid
	addr := d.tcpAddr("web")
	load := startTwoLoads(t, "http://"+addr+"/")

	time.Sleep(loadMargin) // load, not a wait for a state
	var silentMs []int
	for i := 1; i <= zdUpgrades; i++ {
		if i > 1 {
			time.Sleep(upgradeEvery) // spacing the upgrades under load
		}
		out := d.cfkctl("upgrade")
		m := upgraded.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("cfkctl upgrade: %q", out)
		}
		n, _ := strconv.Atoi(m[1])
		ms, _ := strconv.Atoi(m[2])
		if n != i {
			t.Fatalf("upgrade %d reported as upgrade %d", i, n)
		}
		silentMs = append(silentMs, ms)
		t.Logf("upgrade %d: %s", i, strings.TrimSpace(out))

		d.redial()
		if d.p.exited() {
			t.Fatalf("cfkd exited at upgrade %d: %v", i, d.p.err)
		}
		if got := d.must("command upgrades"); len(got) != 1 || got[0] != strconv.Itoa(i) {
			t.Fatalf("command upgrades after %d upgrades: %q", i, got)
		}
		for j, name := range names {
			s := d.status(name)
			if s.state != "running" || s.pid != pids[j] {
				t.Fatalf("after upgrade %d %s is %s pid %d, was running pid %d", i, name, s.state, s.pid, pids[j])
			}
			if pp := ppid(s.pid); pp != cfkdPid {
				t.Fatalf("after upgrade %d %s (pid %d) is the child of %d, not of cfkd (%d)", i, name, s.pid, pp, cfkdPid)
			}
		}
		if a := d.tcpAddr("web"); a != addr {
			t.Fatalf("after upgrade %d the socket is %s, was %s", i, a, addr)
		}
	}
	// The last image under load alone for a while (as long as there is
	// time for it, a rolling restart of about a second, and zdTail), then
	// the rolling restart.
	if pause := min(upgradeEvery, load.left()-zdTail-time.Second); pause > 0 {
		time.Sleep(pause)
	}
	if load.left() < zdTail {
		t.Fatalf("the upgrades took too long: %v of load left for the rolling restart", load.left())
	}
	before := pids
	d.rollRestart(1, len(names), false)
	pids = d.waitRunning(names...)
	requireReplaced(t, names, before, pids, false)
	for i, p := range pids {
		if pp := ppid(p); pp != cfkdPid {
			t.Fatalf("%s (pid %d) restarted by the upgraded cfkd is the child of %d, not %d", names[i], p, pp, cfkdPid)
		}
	}

	_, _, perPid := load.wait()
	requireServed(t, perPid, before)
	requireServed(t, perPid, pids)
	d.requireQuietLog()
	t.Logf("%d in-place upgrades; the console was silent for %v ms (max %d ms)",
		zdUpgrades, silentMs, slices.Max(silentMs))
}
