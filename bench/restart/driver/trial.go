package main

import (
	"fmt"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

// trial is one restart under load.
type trial struct {
	wrk       benchkit.WrkResult
	finished  bool          // the new pool was complete before the deadline
	duration  time.Duration // restart command → every old worker gone and n new ones answered
	cmdReturn time.Duration // restart command → the command returned
	probeReqs int
	probeErrs int
	output    string // what the restart command printed
	cmdErr    error
	// otherCPU is the share of the machine (0..1) that user processes
	// other than the benchmark's used during the wrk run.
	otherCPU float64
}

// restartDeadline bounds how long a restart may take before the trial
// gives up waiting for it.
const restartDeadline = 20 * time.Second

// probeGoroutines is how many probes run at once during a restart.
const probeGoroutines = 4

// measure runs wrk against the pool for o.wrkDur, restarts the pool
// o.restartAt into the run, and times the restart: from the command to
// the moment every old worker has exited and n new workers have each
// answered a probe.
func measure(p pool, o *options, n int, wrkDur time.Duration, saveAs string) (trial, error) {
	var t trial
	var old []int
	if !benchkit.WaitFor(15*time.Second, 20*time.Millisecond, func() bool { old = p.workers(); return len(old) == n }) {
		return t, fmt.Errorf("the pool has %d workers, not %d, before the restart", len(old), n)
	}
	isOld := map[int]bool{}
	for _, pid := range old {
		isOld[pid] = true
	}
	others0, start := benchkit.OtherCPU(), time.Now()
	w, err := o.wrk(wrkDur).Start(p.url())
	if err != nil {
		return t, err
	}
	time.Sleep(o.restartAt)

	t0 := time.Now()
	pr := startProber(p.url(), probeGoroutines)
	type result struct {
		out string
		err error
		at  time.Time
	}
	cmd := make(chan result, 1)
	go func() {
		out, err := p.restart()
		cmd <- result{out, err, time.Now()}
	}()

	gone := map[int]bool{}
	var oldGoneAt time.Time
	deadline := t0.Add(restartDeadline)
	var cmdRes *result
	for time.Now().Before(deadline) {
		select {
		case r := <-cmd:
			cmdRes = &r
		default:
		}
		if oldGoneAt.IsZero() {
			for _, pid := range old {
				if !gone[pid] && !benchkit.Alive(pid) {
					gone[pid] = true
				}
			}
			if len(gone) == len(old) {
				oldGoneAt = time.Now()
			}
		}
		if !oldGoneAt.IsZero() {
			last, count := oldGoneAt, 0
			for pid, at := range pr.seen() {
				if isOld[pid] || !benchkit.Alive(pid) {
					continue
				}
				count++
				if at.After(last) {
					last = at
				}
			}
			if count >= n {
				t.finished, t.duration = true, last.Sub(t0)
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.probeReqs, t.probeErrs = pr.end()
	if cmdRes == nil {
		select {
		case r := <-cmd:
			cmdRes = &r
		case <-time.After(60 * time.Second):
		}
	}
	if cmdRes != nil {
		t.cmdReturn, t.output, t.cmdErr = cmdRes.at.Sub(t0), cmdRes.out, cmdRes.err
	}
	t.wrk, err = w.Wait(saveAs)
	if err != nil {
		return t, err
	}
	t.otherCPU = benchkit.OtherShare(others0, benchkit.OtherCPU(), time.Since(start))
	return t, nil
}
