// Command driver measures what cfkd's pre-bound sockets cost (issue 3):
// the throughput of workers behind a cfkd socket against the same workers
// started by hand on one socket, and the respawn latency of a service
// handed its socket with `sockets=` (through cfkd's /bin/sh exec step)
// against one with `tie_stdin_to=` and one with no socket. It prints a
// markdown report; bench/sockets/run.sh builds everything and runs it.
//
// It is also the by-hand launcher of the throughput comparison (-launch)
// and that launcher's exec step (-exec-step).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

type options struct {
	cfkd, worker, marker, work string
	workers                    int
	rounds                     int
	wrkThreads, wrkConns       int
	wrkDur                     time.Duration
	kills                      int
	minAge                     time.Duration
	quietPct                   int
	same                       string // "", or "cfkd" / "hand": an A/A run
	pairedRounds, pairedSecs   int
	pin                        bool   // paired phase: clients and pools on CPUs of their own
	control                    string // paired phase: "relay" puts a TCP relay in front of the first pool
}

// wrk is how every wrk run of the throughput comparison is made.
func (o options) wrk(dur time.Duration, closeConns bool) benchkit.Wrk {
	return benchkit.Wrk{Threads: o.wrkThreads, Conns: o.wrkConns, Duration: dur, CloseConns: closeConns}
}

func main() {
	var o options
	flag.StringVar(&o.cfkd, "cfkd", "", "cfkd binary")
	flag.StringVar(&o.worker, "worker", "", "the HTTP worker (examples/worker)")
	flag.StringVar(&o.marker, "marker", "", "the marker binary (bench/sockets/marker.c)")
	flag.StringVar(&o.work, "work", "", "scratch directory")
	launchMode := flag.Bool("launch", false, "run as the by-hand launcher")
	execStepMode := flag.Bool("exec-step", false, "set LISTEN_PID to our pid and exec the arguments")
	addrFile := flag.String("addr-file", "", "with -launch: write the bound address here")
	flag.IntVar(&o.workers, "workers", 4, "workers per pool")
	loadMode := flag.Bool("load", false, "run as the balanced load client of the paired phase")
	loadAddr := flag.String("addr", "", "with -load: the pool's host:port")
	loadConns := flag.Int("conns", 32, "with -load: connections")
	loadSecs := flag.Float64("load-secs", 3, "with -load: seconds to load")
	loadClose := flag.Bool("close", false, "with -load: a new connection per request")
	relayTo := flag.String("relay", "", "run as a TCP relay to this host:port (with -addr-file)")
	flag.Parse()

	switch {
	case *relayTo != "":
		err := runRelay(*relayTo, *addrFile)
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	case *loadMode:
		dur := time.Duration(*loadSecs * float64(time.Second))
		if err := runLoad(*loadAddr, o.workers, *loadConns, dur, *loadClose); err != nil {
			fmt.Fprintln(os.Stderr, "load:", err)
			os.Exit(1)
		}
		return
	case *execStepMode:
		err := execStep(flag.Args())
		fmt.Fprintln(os.Stderr, "exec step:", err)
		os.Exit(111)
	case *launchMode:
		if err := launch(o.worker, o.workers, *addrFile); err != nil {
			fmt.Fprintln(os.Stderr, "launcher:", err)
			os.Exit(1)
		}
		return
	}
	if o.cfkd == "" || o.worker == "" || o.marker == "" || o.work == "" {
		flag.Usage()
		os.Exit(2)
	}
	o.rounds = benchkit.EnvInt("ROUNDS", 5)
	o.quietPct = benchkit.EnvInt("QUIET_PCT", 10)
	switch o.same = os.Getenv("SAME"); o.same {
	case "", "cfkd", "hand":
	default:
		fmt.Fprintf(os.Stderr, "driver: SAME=%q: cfkd or hand\n", o.same)
		os.Exit(2)
	}
	o.wrkThreads = benchkit.EnvInt("WRK_THREADS", 2)
	o.wrkConns = benchkit.EnvInt("WRK_CONNS", 32)
	o.wrkDur = time.Duration(benchkit.EnvInt("WRK_SECS", 10)) * time.Second
	o.pairedRounds = benchkit.EnvInt("PAIRED_ROUNDS", 20)
	o.pairedSecs = benchkit.EnvInt("PAIRED_SECS", 3)
	o.pin = benchkit.EnvInt("PIN", 1) == 1
	switch o.control = os.Getenv("CONTROL"); o.control {
	case "", "relay":
	default:
		fmt.Fprintf(os.Stderr, "driver: CONTROL=%q: relay or nothing\n", o.control)
		os.Exit(2)
	}
	o.kills = benchkit.EnvInt("KILLS", 40)
	o.minAge = time.Duration(benchkit.EnvInt("MIN_AGE_MS", 100)) * time.Millisecond
	for _, p := range []*string{&o.cfkd, &o.worker, &o.marker, &o.work} {
		if a, err := filepath.Abs(*p); err == nil {
			*p = a
		}
	}

	// On TERM or INT (run.sh's trap), stop everything we started.
	benchkit.ExitOnSignal(func(os.Signal) { benchkit.KillAll(benchkit.TermGrace) }, syscall.SIGTERM, syscall.SIGINT)

	rep := &report{opts: o, started: time.Now()}
	if phases := os.Getenv("PHASES"); phases == "" || benchkit.Listed(phases, "paired") {
		benchkit.Logf("paired: both pools loaded at once, %d rounds of %ds per load mode", o.pairedRounds, o.pairedSecs)
		p, err := paired(o)
		if err != nil {
			benchkit.Fail(err)
		}
		rep.paired = p
	}
	if phases := os.Getenv("PHASES"); phases == "" || benchkit.Listed(phases, "throughput") {
		benchkit.Logf("throughput: cfkd pool vs by-hand pool, %d rounds of %v each", o.rounds, o.wrkDur)
		t, err := throughput(o)
		if err != nil {
			benchkit.Fail(err)
		}
		rep.throughput = t
	}
	if phases := os.Getenv("PHASES"); phases == "" || benchkit.Listed(phases, "respawn") {
		benchkit.Logf("respawn: %d SIGKILLs per variant", o.kills)
		r, err := respawn(o)
		if err != nil {
			benchkit.Fail(err)
		}
		rep.respawn = r
	}
	rep.write(os.Stdout)
}
