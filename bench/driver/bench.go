package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

// options are the knobs of one run, from the environment.
type options struct {
	kills           int           // SIGKILLs per respawn measurement
	respawnServices int           // services in the small respawn instance
	services        int           // services in the large instance
	statusRuns      int           // timed status calls, each way
	idle            time.Duration // idle CPU window
	minAge          time.Duration // a service is killed only once this old
	settle          time.Duration // pause after all services exec'd
	work            string        // scratch directory
	retries         int           // extra attempts at a supervisor when the machine was busy
	quietWait       time.Duration // before each attempt, wait this long at most for a quiet machine
}

// result is everything measured for one supervisor. A zero duration or a
// nil slice means not measured; errs says why.
type result struct {
	name, version, tuning string

	respawnSmall, respawnLoaded []time.Duration
	respawnMissed               int

	launch                 time.Duration // launch and declaration of N down services
	upAPI, upCLI           time.Duration // start command issued -> last service exec'd
	answerAPI, answerCLI   time.Duration // start command issued -> command returned
	downAPI, downCLI       time.Duration // down command issued -> last service reaped
	statusAPI, statusCLI   []time.Duration
	statusAPIN, statusCLIN int // services covered by one status answer
	mem                    memory
	idleTicks              uint64 // clock ticks of CPU over the idle window
	idleSchedNs            uint64
	idleSwitches           uint64
	idleProcs              int
	idleMachineTicks       uint64 // CPU used by the whole machine in the window
	shutdown               time.Duration
	errs                   []string

	attempt     int     // which attempt at this supervisor this is, from 1
	othersShare float64 // CPU used by other processes / (wall time × CPUs), over the attempt
}

func (r *result) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.errs = append(r.errs, msg)
	fmt.Fprintf(os.Stderr, "  %s: %s\n", r.name, msg)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// benchmark runs every measurement on one supervisor.
func benchmark(s supervisor, o options, attempt int) *result {
	r := &result{name: s.name(), tuning: s.tuning(), attempt: attempt}
	dir := filepath.Join(o.work, fmt.Sprintf("%s.%d", s.name(), attempt))
	busy0, own0, t0 := machineBusyTicks(), ownCPU(), time.Now()
	defer func() {
		reapOrphans()
		wall := time.Since(t0)
		others := time.Duration(machineBusyTicks()-busy0)*time.Second/benchkit.ClockTicksPerSec - (ownCPU() - own0)
		r.othersShare = max(0, float64(others)/float64(wall*time.Duration(runtime.NumCPU())))
	}()
	logf("%s: respawn, %d services, %d kills", s.name(), o.respawnServices, o.kills)
	if err := respawnPhase(s, r, filepath.Join(dir, "respawn"), o); err != nil {
		r.fail("respawn: %v", err)
	}
	stopSupervisor(s, r, false)
	logf("%s: %d services", s.name(), o.services)
	launched, err := largePhase(s, r, filepath.Join(dir, "large"), o)
	if err != nil {
		r.fail("%d services: %v", o.services, err)
	}
	stopSupervisor(s, r, launched)
	return r
}

// stopSupervisor shuts s down, timing it when timed is set; if that fails
// everything it left is killed so the next supervisor starts clean.
func stopSupervisor(s supervisor, r *result, timed bool) {
	t0 := time.Now()
	err := s.stop()
	if timed && err == nil {
		r.shutdown = time.Since(t0)
	}
	if err != nil {
		r.fail("stop: %v", err)
		tracked.killAll()
	}
}

func respawnPhase(s supervisor, r *result, dir string, o options) error {
	log, err := setup(s, dir, o.respawnServices)
	if err != nil {
		return err
	}
	defer log.Close()
	r.version = s.version()
	if err := s.startAll(viaAPI); err != nil {
		return err
	}
	starts, err := log.waitCount(o.respawnServices, 30*time.Second)
	if err != nil {
		return err
	}
	lat, missed, live, err := killLoop(log, starts, o.kills, o.minAge)
	r.respawnSmall, r.respawnMissed = lat, r.respawnMissed+missed
	if err != nil {
		return err
	}
	_, err = timeDown(s, viaAPI, live, o.minAge)
	return err
}

// setup prepares a fresh marker file and launches s with n services.
func setup(s supervisor, dir string, n int) (*markerLog, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	log, err := newMarkerLog(filepath.Join(dir, "markers"))
	if err != nil {
		return nil, err
	}
	if err := s.launch(dir, n, log.path); err != nil {
		log.Close()
		return nil, err
	}
	return log, nil
}

// busyMachineMs is how much CPU the rest of the machine may use during
// the idle window (the driver's own reads, kernel threads) before the
// report says the machine was not quiet.
const busyMachineMs = 500

// killGap is the least time between a restart and the next kill.
const killGap = 20 * time.Millisecond

// killLoop SIGKILLs the oldest live service, once it has run for minAge,
// and waits for the supervisor to start a new one, kills times. The
// latency of one kill is the new process's own first clock reading minus
// the clock read just before kill(2). It returns the latencies, the kills
// not followed by a restart, and the services left alive.
func killLoop(log *markerLog, live []start, kills int, minAge time.Duration) ([]time.Duration, int, []start, error) {
	queue := append([]start(nil), live...) // oldest first
	for _, st := range queue {
		tracked.service(st.pid)
	}
	var lat []time.Duration
	missed := 0
	var last time.Time // when the previous kill was answered
	for k := 0; k < kills && len(queue) > 0; k++ {
		victim := queue[0]
		queue = queue[1:]
		// runsv and s6-supervise wait a second before restarting a
		// service that died within a second of starting; a service this
		// old is restarted at once by every supervisor measured.
		time.Sleep(time.Until(victim.at.Add(minAge)))
		// Let the supervisor finish with the previous restart (logging,
		// status files) so that each kill finds it idle.
		time.Sleep(time.Until(last.Add(killGap)))
		if err := log.read(); err != nil {
			return lat, missed, queue, err
		}
		seen := len(log.starts)
		t0 := time.Now()
		if err := syscall.Kill(victim.pid, syscall.SIGKILL); err != nil {
			return lat, missed, queue, fmt.Errorf("kill %d: %w", victim.pid, err)
		}
		next, err := log.waitNext(seen, 5*time.Second)
		if err != nil {
			missed++
			continue
		}
		last = time.Now()
		tracked.service(next.pid)
		lat = append(lat, next.at.Sub(t0))
		queue = append(queue, next)
	}
	if missed > 0 {
		return lat, missed, queue, fmt.Errorf("%d kills not followed by a restart within 5 s", missed)
	}
	return lat, missed, queue, nil
}

// timeDown brings every service down and returns the time from the
// command to the moment the last of live was reaped.
//
// It first lets the youngest service reach minAge: runsv sleeps a whole
// second, deaf to commands, after a service that lived less than a second
// exits, which would delay the next start all.
func timeDown(s supervisor, v via, live []start, minAge time.Duration) (time.Duration, error) {
	var youngest time.Time
	for _, st := range live {
		if st.at.After(youngest) {
			youngest = st.at
		}
	}
	time.Sleep(time.Until(youngest.Add(minAge)))
	services := pidsOf(live)
	t0 := time.Now()
	if err := s.downAll(v); err != nil {
		return 0, err
	}
	pending := services
	if !benchkit.WaitFor(60*time.Second, 5*time.Millisecond, func() bool {
		for len(pending) > 0 && !(benchkit.Alive(pending[0]) && exeIs(pending[0], tracked.markerExe)) {
			pending = pending[1:]
		}
		return len(pending) == 0
	}) {
		return 0, fmt.Errorf("%d services still alive 60 s after down (pid %d)", len(pending), pending[0])
	}
	return time.Since(t0), nil
}

// startCycle issues start all and waits for n new marker lines. It returns
// the lines, the time from the command to the last exec, and the time the
// command took to answer.
func startCycle(s supervisor, v via, log *markerLog, n int) ([]start, time.Duration, time.Duration, error) {
	if err := log.read(); err != nil {
		return nil, 0, 0, err
	}
	before := len(log.starts)
	t0 := time.Now()
	err := s.startAll(v)
	answered := time.Since(t0)
	if err != nil {
		return nil, 0, 0, err
	}
	all, err := log.waitCount(before+n, 120*time.Second)
	starts := all[before:]
	for _, st := range starts {
		tracked.service(st.pid)
	}
	if err != nil {
		return starts, 0, answered, err
	}
	last := starts[0].at
	for _, st := range starts {
		if st.at.After(last) {
			last = st.at
		}
	}
	return starts, last.Sub(t0), answered, nil
}

func pidsOf(starts []start) []int {
	p := make([]int, len(starts))
	for i, st := range starts {
		p[i] = st.pid
	}
	return p
}

// largePhase measures everything about N services. It reports whether the
// supervisor was launched, so that its shutdown is worth timing.
func largePhase(s supervisor, r *result, dir string, o options) (bool, error) {
	t0 := time.Now()
	log, err := setup(s, dir, o.services)
	if err != nil {
		return false, err
	}
	defer log.Close()
	r.launch = time.Since(t0)

	// Start all through the supervisor's own interface.
	starts, up, answer, err := startCycle(s, viaAPI, log, o.services)
	if err != nil {
		return true, fmt.Errorf("start all (API): %w", err)
	}
	r.upAPI, r.answerAPI = up, answer
	time.Sleep(o.settle)

	// Memory and idle CPU of the supervisor's own processes.
	svc := map[int]bool{}
	for _, st := range starts {
		svc[st.pid] = true
	}
	pids := supervisorPids(s.root(), svc, tracked.markerExe)
	r.mem = measureMemory(pids)
	r.idleProcs = len(pids)
	m0, c0 := machineBusyTicks(), sampleCPU(pids)
	time.Sleep(o.idle)
	c1, m1 := sampleCPU(pids), machineBusyTicks()
	r.idleMachineTicks = m1 - m0
	if other := (r.idleMachineTicks - min(r.idleMachineTicks, c1.ticks-c0.ticks)) * 1000 / benchkit.ClockTicksPerSec; other > busyMachineMs {
		r.fail("other processes used %d ms of CPU during the %v idle window: the machine was not quiet, figures in this column may be disturbed", other, o.idle)
	}
	r.idleTicks = c1.ticks - c0.ticks
	r.idleSchedNs = c1.schedNs - c0.schedNs
	r.idleSwitches = c1.switches - c0.switches
	if c1.missing > 0 {
		r.fail("%d supervisor processes vanished during the idle window", c1.missing)
	}

	// Status of everything, both ways.
	for _, v := range []via{viaCLI, viaAPI} {
		var times []time.Duration
		covered := 0
		for i := 0; i < o.statusRuns; i++ {
			t := time.Now()
			n, err := s.status(v)
			times = append(times, time.Since(t))
			if err != nil {
				r.fail("status (%v): %v", v, err)
				break
			}
			covered = n
		}
		if covered < o.services {
			r.fail("status (%v) covered %d services, want %d", v, covered, o.services)
		}
		if v == viaCLI {
			r.statusCLI, r.statusCLIN = times, covered
		} else {
			r.statusAPI, r.statusAPIN = times, covered
		}
	}

	// Respawn with everything up: kill the oldest services in turn.
	lat, missed, live, err := killLoop(log, starts, o.kills, o.minAge)
	r.respawnLoaded, r.respawnMissed = lat, r.respawnMissed+missed
	if err != nil {
		r.fail("respawn with %d up: %v", o.services, err)
	}

	// Down through the API, then a second cycle through the CLI.
	if r.downAPI, err = timeDown(s, viaAPI, live, o.minAge); err != nil {
		return true, fmt.Errorf("down all (API): %w", err)
	}
	starts, up, answer, err = startCycle(s, viaCLI, log, o.services)
	if err != nil {
		return true, fmt.Errorf("start all (CLI): %w", err)
	}
	r.upCLI, r.answerCLI = up, answer
	if r.downCLI, err = timeDown(s, viaCLI, starts, o.minAge); err != nil {
		return true, fmt.Errorf("down all (CLI): %w", err)
	}
	return true, nil
}
