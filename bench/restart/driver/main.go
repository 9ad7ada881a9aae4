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
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
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

func envInt(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		fmt.Fprintf(os.Stderr, "driver: %s=%q is not a count\n", name, v)
		os.Exit(2)
	}
	return n
}

func envStr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "== "+format+"\n", args...)
}

// listed tells whether a comma separated list holds word.
func listed(list, word string) bool {
	for _, w := range strings.Split(list, ",") {
		if strings.TrimSpace(w) == word {
			return true
		}
	}
	return false
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
	o.workers = envInt("WORKERS", 4)
	o.bigWorkers = envInt("BIG_WORKERS", 8)
	o.reps = envInt("REPS", 3)
	o.bigReps = envInt("BIG_REPS", 1)
	o.wrkThreads = envInt("WRK_THREADS", 2)
	o.wrkConns = envInt("WRK_CONNS", 16)
	o.wrkDur = time.Duration(envInt("WRK_SECS", 10)) * time.Second
	o.bigWrkDur = time.Duration(envInt("BIG_WRK_SECS", 6)) * time.Second
	o.restartAt = time.Duration(envInt("RESTART_AT_MS", 2000)) * time.Millisecond
	o.upgrades = envInt("UPGRADES", 20)
	o.starterInterval = envInt("STARTER_INTERVAL", 1)
	var keys []string
	for _, c := range cases {
		keys = append(keys, c.key)
	}
	o.cases = envStr("CASES", strings.Join(keys, ","))
	// 8 workers: the rolling restarts. Not the second cfkd worker
	// program, nor supervisord's group restart (not rolling: the 4-worker
	// table shows what it does to the socket).
	o.bigCases = envStr("BIG_CASES", "cfkd1,cfkd2,supervisord1by1,starman,gunicorn")
	o.phases = envStr("PHASES", "restart,big,upgrade")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		killAll()
		os.Exit(130)
	}()

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
		if !listed(o.phases, phase.name) || phase.reps == 0 {
			continue
		}
		for _, c := range cases {
			if !listed(phase.keys, c.key) {
				continue
			}
			logf("%s: %d workers, %d restarts under wrk", c.label, phase.n, phase.reps)
			cr, err := runCase(o, c, phase.name, phase.n, phase.reps, phase.dur)
			if err != nil {
				fail(fmt.Errorf("%s: %w", c.key, err))
			}
			*phase.out = append(*phase.out, cr)
		}
	}
	if listed(o.phases, "upgrade") && o.upgrades > 0 {
		logf("cfkd: %d upgrades idle, %d under wrk", o.upgrades, o.upgrades)
		u, err := upgrades(o)
		if err != nil {
			fail(fmt.Errorf("upgrade: %w", err))
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
		logf("  %d: errors %d (connect %d read %d write %d timeout %d non-2xx %d), p99 %v, %.0f req/s, restart %v (finished %v), command returned after %v, probes %d/%d failed, other processes %.0f%% of the machine%s",
			i+1, t.wrk.errors(), t.wrk.connect, t.wrk.read, t.wrk.write, t.wrk.timeout, t.wrk.non2xx,
			t.wrk.p99, t.wrk.rps, t.duration.Round(time.Millisecond), t.finished,
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

func fail(err error) {
	fmt.Fprintln(os.Stderr, "driver:", err)
	killAll()
	os.Exit(1)
}
