package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

// upgradeResult is `cfkctl upgrade` run again and again on a cfkd with a
// pool of workers, idle and then under wrk.
type upgradeResult struct {
	idle, loaded []float64          // console silence in ms, as cfkctl prints it
	wrk          benchkit.WrkResult // the wrk run during the loaded upgrades
	samePids     bool               // every worker kept its pid through all upgrades
	otherCPU     float64            // share of the machine other processes used during the wrk run
	// The same wrk run on the same pool just before, with no upgrade:
	// what the workers' latency is without cfkd re-executing.
	control      benchkit.WrkResult
	controlOther float64
}

var upgradeGap = regexp.MustCompile(`answered again after (\d+) ms`)

// upgradePause separates upgrades under load, so that they spread over
// the wrk run.
const upgradePause = 200 * time.Millisecond

func upgrades(o *options) (*upgradeResult, error) {
	dir := filepath.Join(o.work, "upgrade")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &cfkdPool{o: o, dir: dir, batch: 1}
	if err := p.up(o.workers); err != nil {
		return nil, fmt.Errorf("cfkd: %w", err)
	}
	defer p.down()
	before := p.workers()
	one := func() (float64, error) {
		out, err := run(dir, o.cfkctl, "-a", p.addr, "upgrade")
		if err != nil {
			return 0, err
		}
		m := upgradeGap.FindStringSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("cfkctl upgrade printed %q", out)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v, nil
	}
	r := &upgradeResult{}
	for i := 0; i < o.upgrades; i++ {
		v, err := one()
		if err != nil {
			return nil, err
		}
		r.idle = append(r.idle, v)
	}
	others0, start := benchkit.OtherCPU(), time.Now()
	w, err := o.wrk(o.wrkDur).Start(p.url())
	if err != nil {
		return nil, err
	}
	if r.control, err = w.Wait(filepath.Join(dir, "wrk-control.out")); err != nil {
		return nil, err
	}
	r.controlOther = benchkit.OtherShare(others0, benchkit.OtherCPU(), time.Since(start))

	others0, start = benchkit.OtherCPU(), time.Now()
	w, err = o.wrk(o.wrkDur).Start(p.url())
	if err != nil {
		return nil, err
	}
	time.Sleep(o.restartAt)
	for i := 0; i < o.upgrades; i++ {
		v, err := one()
		if err != nil {
			_, _ = w.Wait(filepath.Join(dir, "wrk.out"))
			return nil, err
		}
		r.loaded = append(r.loaded, v)
		time.Sleep(upgradePause)
	}
	if r.wrk, err = w.Wait(filepath.Join(dir, "wrk.out")); err != nil {
		return nil, err
	}
	r.otherCPU = benchkit.OtherShare(others0, benchkit.OtherCPU(), time.Since(start))
	after := p.workers()
	r.samePids = len(before) == len(after)
	in := map[int]bool{}
	for _, pid := range before {
		in[pid] = true
	}
	for _, pid := range after {
		r.samePids = r.samePids && in[pid]
	}
	return r, nil
}
