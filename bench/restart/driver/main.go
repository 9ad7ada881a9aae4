// Command driver measures restarts of a pool of HTTP workers under load
// (issue 5): errors, p99 latency and the restart's duration while wrk
// runs, for cfkd's rolling restart and for the same pool's restart under
// supervisord, Server::Starter with Starman, and gunicorn; then how long
// cfkd's console is silent during an in-place upgrade. It prints a
// markdown report; bench/restart/run.sh installs the peers, builds
// everything and runs it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

type options struct {
	cfkd, cfkctl, worker, gunicorn, work string
	readyNotify                          bool
	starterInterval                      int
	workers, bigWorkers                  int
	reps, bigReps                        int
	wrkThreads, wrkConns                 int
	wrkDur, bigWrkDur, restartAt         time.Duration
	upgrades                             int
	cases, bigCases, phases              string
}

// wrk is how every wrk run of a trial or of the upgrades is made.
func (o *options) wrk(dur time.Duration) benchkit.Wrk {
	return benchkit.Wrk{Threads: o.wrkThreads, Conns: o.wrkConns, Duration: dur}
}

func main() {
	o := &options{}
	flag.StringVar(&o.cfkd, "cfkd", "", "cfkd binary")
	flag.StringVar(&o.cfkctl, "cfkctl", "", "cfkctl binary")
	flag.StringVar(&o.worker, "worker", "", "the Go HTTP worker (examples/worker)")
	flag.StringVar(&o.gunicorn, "gunicorn", "/usr/bin/gunicorn", "gunicorn")
	flag.StringVar(&o.work, "work", "", "scratch directory")
	flag.BoolVar(&o.readyNotify, "ready-notify", false, "the worker sends READY=1: give cfkd's services ready=notify")
	flag.Parse()
	if o.cfkd == "" || o.cfkctl == "" || o.worker == "" || o.work == "" {
		flag.Usage()
		os.Exit(2)
	}
	for _, p := range []*string{&o.cfkd, &o.cfkctl, &o.worker, &o.work} {
		a, err := filepath.Abs(*p)
		if err == nil {
			// /proc/PID/exe shows the path with symlinks resolved.
			if r, err := filepath.EvalSymlinks(a); err == nil {
				a = r
			}
			*p = a
		}
	}
	o.workers = benchkit.EnvInt("WORKERS", 4)
	o.bigWorkers = benchkit.EnvInt("BIG_WORKERS", 8)
	o.reps = benchkit.EnvInt("REPS", 3)
	o.bigReps = benchkit.EnvInt("BIG_REPS", 1)
	o.wrkThreads = benchkit.EnvInt("WRK_THREADS", 2)
	o.wrkConns = benchkit.EnvInt("WRK_CONNS", 16)
	o.wrkDur = time.Duration(benchkit.EnvInt("WRK_SECS", 10)) * time.Second
	o.bigWrkDur = time.Duration(benchkit.EnvInt("BIG_WRK_SECS", 6)) * time.Second
	o.restartAt = time.Duration(benchkit.EnvInt("RESTART_AT_MS", 2000)) * time.Millisecond
	o.upgrades = benchkit.EnvInt("UPGRADES", 20)
	o.starterInterval = benchkit.EnvInt("STARTER_INTERVAL", 1)
	var keys []string
	for _, c := range cases {
		keys = append(keys, c.key)
	}
	o.cases = benchkit.EnvStr("CASES", strings.Join(keys, ","))
	// 8 workers: the rolling restarts. Not the second cfkd worker
	// program, nor supervisord's group restart (not rolling: the 4-worker
	// table shows what it does to the socket).
	o.bigCases = benchkit.EnvStr("BIG_CASES", "cfkd1,cfkd2,cfkd1o,cfkd2o,supervisord1by1,starman,gunicorn")
	o.phases = benchkit.EnvStr("PHASES", "restart,big,upgrade")

	// On TERM or INT (run.sh's trap), stop every peer we started.
	benchkit.ExitOnSignal(func(os.Signal) { benchkit.KillAll(benchkit.TermGrace) }, syscall.SIGTERM, syscall.SIGINT)

	rep := &report{o: o, started: time.Now()}
	for _, phase := range []struct {
		name string
		n    int
		reps int
		dur  time.Duration
		out  *[]caseResult
		keys string
	}{
		{"restart", o.workers, o.reps, o.wrkDur, &rep.restarts, o.cases},
		{"big", o.bigWorkers, o.bigReps, o.bigWrkDur, &rep.big, o.bigCases},
	} {
		if !benchkit.Listed(o.phases, phase.name) || phase.reps == 0 {
			continue
		}
		for _, c := range cases {
			if !benchkit.Listed(phase.keys, c.key) {
				continue
			}
			benchkit.Logf("%s: %d workers, %d restarts under wrk", c.label, phase.n, phase.reps)
			cr, err := runCase(o, c, phase.name, phase.n, phase.reps, phase.dur)
			if err != nil {
				benchkit.Fail(fmt.Errorf("%s: %w", c.key, err))
			}
			*phase.out = append(*phase.out, cr)
		}
	}
	if benchkit.Listed(o.phases, "upgrade") && o.upgrades > 0 {
		benchkit.Logf("cfkd: %d upgrades idle, %d under wrk", o.upgrades, o.upgrades)
		u, err := upgrades(o)
		if err != nil {
			benchkit.Fail(fmt.Errorf("upgrade: %w", err))
		}
		rep.upgrade = u
	}
	rep.write(os.Stdout)
}

// caseResult is every trial of one peer case.
type caseResult struct {
	c      peerCase
	n      int
	trials []trial
}

func runCase(o *options, c peerCase, phase string, n, reps int, dur time.Duration) (caseResult, error) {
	cr := caseResult{c: c, n: n}
	dir := filepath.Join(o.work, fmt.Sprintf("%s-%s", phase, c.key))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return cr, err
	}
	p := c.new(o, dir)
	if err := p.up(n); err != nil {
		p.down()
		return cr, fmt.Errorf("start: %w (see %s)", err, dir)
	}
	defer p.down()
	for i := 0; i < reps; i++ {
		t, err := measure(p, o, n, dur, filepath.Join(dir, fmt.Sprintf("wrk-%d.out", i+1)))
		if err != nil {
			return cr, err
		}
		benchkit.Logf("  %d: errors %d (connect %d read %d write %d timeout %d non-2xx %d), p99 %v, %.0f req/s, restart %v (finished %v), command returned after %v, probes %d/%d failed, other processes %.0f%% of the machine%s",
			i+1, t.wrk.Errors(), t.wrk.Connect, t.wrk.Read, t.wrk.Write, t.wrk.Timeout, t.wrk.Non2xx,
			t.wrk.P99, t.wrk.RPS, t.duration.Round(time.Millisecond), t.finished,
			t.cmdReturn.Round(time.Millisecond), t.probeErrs, t.probeReqs, 100*t.otherCPU, errNote(t.cmdErr))
		cr.trials = append(cr.trials, t)
		// Let the old generation's last processes go (an old starman
		// master, gunicorn's reaping) before the next trial.
		time.Sleep(500 * time.Millisecond)
	}
	return cr, nil
}

func errNote(err error) string {
	if err == nil {
		return ""
	}
	return "; command failed: " + err.Error()
}
