package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

type report struct {
	o        *options
	started  time.Time
	restarts []caseResult
	big      []caseResult
	upgrade  *upgradeResult
}

func (r *report) write(w io.Writer) {
	o := r.o
	if len(r.restarts) > 0 {
		fmt.Fprintf(w, "### Restart of %d workers under load\n\n", o.workers)
		fmt.Fprintf(w, "`wrk -t%d -c%d -d%ds --latency`, restart issued %v into the run; %d runs per row, medians. "+
			"Errors = connect + read + write + timeout + non-2xx, as wrk counts them. "+
			"Restart = from the command to every old worker gone and %d new workers each having answered a probe. "+
			"Others = the share of the machine that processes other than the benchmark's used during each run.\n\n",
			o.wrkThreads, o.wrkConns, int(o.wrkDur.Seconds()), o.restartAt, o.reps, o.workers)
		r.table(w, r.restarts)
	}
	if len(r.big) > 0 {
		fmt.Fprintf(w, "### Restart of %d workers under load\n\n", o.bigWorkers)
		fmt.Fprintf(w, "Same, with `-d%ds`, %d run(s) per row.\n\n", int(o.bigWrkDur.Seconds()), o.bigReps)
		r.table(w, r.big)
	}
	if u := r.upgrade; u != nil {
		fmt.Fprintf(w, "### cfkd in-place upgrade: how long the console does not answer\n\n")
		fmt.Fprintf(w, "`cfkctl upgrade` %d times with %d idle workers, then %d times %v apart during `wrk -t%d -c%d -d%ds`; "+
			"the figure is the one cfkctl prints (\"the console answered again after N ms\"). "+
			"The control row is the same wrk run on the same pool just before, with no upgrade.\n\n",
			len(u.idle), o.workers, len(u.loaded), upgradePause, o.wrkThreads, o.wrkConns, int(o.wrkDur.Seconds()))
		fmt.Fprintln(w, "| | median | max | wrk errors | wrk p99 | others |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
		fmt.Fprintf(w, "| idle | %.0f ms | %.0f ms | | | |\n", benchkit.Median(u.idle), benchkit.Quantile(u.idle, 1))
		fmt.Fprintf(w, "| wrk, no upgrade (control) | | | %d | %.2f ms | %.0f%% |\n", u.control.Errors(), benchkit.Millis(u.control.P99), 100*u.controlOther)
		fmt.Fprintf(w, "| under wrk | %.0f ms | %.0f ms | %d | %.2f ms | %.0f%% |\n\n", benchkit.Median(u.loaded), benchkit.Quantile(u.loaded, 1),
			u.wrk.Errors(), benchkit.Millis(u.wrk.P99), 100*u.otherCPU)
		fmt.Fprintf(w, "Workers kept their pids through all %d upgrades: %v.\n\n", len(u.idle)+len(u.loaded), u.samePids)
	}
	fmt.Fprintf(w, "Driver time: %v.\n", time.Since(r.started).Round(time.Second))
}

func (r *report) table(w io.Writer, crs []caseResult) {
	fmt.Fprintln(w, "| peer, restart | errors | p99 | req/s | restart | command returned | failed probes | others |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, cr := range crs {
		var errs, p99, rps, dur, ret, other []float64
		var probes, probeErrs int
		unfinished := 0
		for _, t := range cr.trials {
			errs = append(errs, float64(t.wrk.Errors()))
			p99 = append(p99, benchkit.Millis(t.wrk.P99))
			rps = append(rps, t.wrk.RPS)
			if t.finished {
				dur = append(dur, benchkit.Millis(t.duration))
			} else {
				unfinished++
			}
			ret = append(ret, benchkit.Millis(t.cmdReturn))
			other = append(other, 100*t.otherCPU)
			probes += t.probeReqs
			probeErrs += t.probeErrs
		}
		restart := fmt.Sprintf("%.0f ms", benchkit.Median(dur))
		if unfinished > 0 {
			restart += fmt.Sprintf(" (%d not done in %v)", unfinished, restartDeadline)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.0f | %s | %.0f ms | %d of %d | %s |\n", cr.c.label,
			trio(errs, "%.0f"), trio(p99, "%.1f ms"), benchkit.Median(rps), restart+" ("+each(cr.trials)+")",
			benchkit.Median(ret), probeErrs, probes, trio(other, "%.0f%%"))
	}
	fmt.Fprintln(w)
	// The error kinds, summed over the runs, where there were any.
	var lines []string
	for _, cr := range crs {
		var s benchkit.WrkResult
		for _, t := range cr.trials {
			s.Connect += t.wrk.Connect
			s.Read += t.wrk.Read
			s.Write += t.wrk.Write
			s.Timeout += t.wrk.Timeout
			s.Non2xx += t.wrk.Non2xx
		}
		if s.Errors() > 0 {
			lines = append(lines, fmt.Sprintf("- %s: connect %d, read %d, write %d, timeout %d, non-2xx %d (sum of %d runs)",
				cr.c.label, s.Connect, s.Read, s.Write, s.Timeout, s.Non2xx, len(cr.trials)))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "Errors by kind:\n\n%s\n\n", strings.Join(lines, "\n"))
	}
}

// trio is the median, then every value in brackets when there are several.
func trio(xs []float64, format string) string {
	s := fmt.Sprintf(format, benchkit.Median(xs))
	if len(xs) > 1 {
		var all []string
		for _, x := range xs {
			all = append(all, fmt.Sprintf(strings.Fields(format)[0], x))
		}
		s += " (" + strings.Join(all, ", ") + ")"
	}
	return s
}

// each lists every run's restart duration in ms.
func each(ts []trial) string {
	var all []string
	for _, t := range ts {
		if t.finished {
			all = append(all, fmt.Sprintf("%.0f", benchkit.Millis(t.duration)))
		} else {
			all = append(all, "—")
		}
	}
	return strings.Join(all, ", ")
}
