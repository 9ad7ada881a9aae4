package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

type report struct {
	opts       options
	started    time.Time
	throughput *throughputResult
	paired     *pairedResult
	respawn    *respawnResult
}

func (r *report) write(w io.Writer) {
	if p := r.paired; p != nil {
		r.pairedTables(w, p)
	}
	if t := r.throughput; t != nil {
		if r.opts.same != "" {
			fmt.Fprintf(w, "### Throughput, A/A: two identical pools (%s vs %s), to see how far apart they land\n\n", t.names[0], t.names[1])
		} else {
			fmt.Fprintf(w, "### Throughput: %d workers behind a cfkd socket vs the same %d started by hand on one socket\n\n", r.opts.workers, r.opts.workers)
		}
		fmt.Fprintf(w, "`%s`, %d rounds; both pools started afresh every round, the order alternates (ABBA). "+
			"Workers seen answering before the runs: %s %s, %s %s. "+
			"Connections per worker: how wrk's keep-alive connections fell on the %d workers (read mid-run with ss). "+
			"Others: the share of the machine that processes other than the benchmark's used during the run; "+
			"a round is quiet when both runs had under %d%%. "+
			"Parent's CPU: what cfkd or the launcher used while its pool served (ticks of 10 ms).\n\n",
			t.wrkArgs, len(t.served[0]), t.names[0], ints(t.served[0]), t.names[1], ints(t.served[1]), r.opts.workers, r.opts.quietPct)
		for m, mode := range loadModes {
			r.throughputTable(w, mode, t.names, t.samples[m])
		}
	}
	if rs := r.respawn; rs != nil {
		fmt.Fprintf(w, "### Respawn after SIGKILL: marker start time minus kill time (ms), %d kills each\n\n", len(rs.latencies[0]))
		fmt.Fprintf(w, "Each service killed once `running` and at least %v old; the three are killed in turn. "+
			"Retries after a failed start in cfkd's log: %d.\n\n", rs.minAge, rs.backoffs)
		fmt.Fprintln(w, "| service | median | p90 | min | max | markers with the wrong fds/env |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
		med := make([]float64, len(variants))
		for i, v := range variants {
			l := rs.latencies[i]
			med[i] = benchkit.Median(l)
			fmt.Fprintf(w, "| %s | %.3f | %.3f | %.3f | %.3f | %d |\n", v.label,
				benchkit.Median(l), benchkit.Quantile(l, 0.9), benchkit.Quantile(l, 0), benchkit.Quantile(l, 1), rs.bad[i])
		}
		fmt.Fprintf(w, "\nCost of the exec step (median `sockets=` minus median `tie_stdin_to=`): %.3f ms; "+
			"`sockets=` minus no socket: %.3f ms.\n\n", med[2]-med[1], med[2]-med[0])
	}
	fmt.Fprintf(w, "Driver time: %v.\n", time.Since(r.started).Round(time.Second))
}

// ints joins small counts with commas.
func ints(xs []int) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprint(x))
	}
	return strings.Join(s, ",")
}

func (r *report) throughputTable(w io.Writer, mode loadMode, names [2]string, samples [2][]runSample) {
	a0, b0 := names[0], names[1]
	fmt.Fprintf(w, "#### %s\n\n", mode.name)
	fmt.Fprintf(w, "| round | %s req/s | %s req/s | %s / %s | %s p99 | %s p99 | connections per worker (%s / %s) | others | %s's parent CPU | %s's parent CPU |\n",
		a0, b0, a0, b0, a0, b0, a0, b0, a0, b0)
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
	var a, b, ratios, ap99, bp99, qa, qb, qratios []float64
	var errs [2]int64
	for i := range samples[0] {
		x, y := samples[0][i], samples[1][i]
		ratio := x.wrk.RPS / y.wrk.RPS
		a, b, ratios = append(a, x.wrk.RPS), append(b, y.wrk.RPS), append(ratios, ratio)
		ap99, bp99 = append(ap99, benchkit.Millis(x.wrk.P99)), append(bp99, benchkit.Millis(y.wrk.P99))
		errs[0] += x.wrk.Errors()
		errs[1] += y.wrk.Errors()
		quiet := 100*x.otherCPU < float64(r.opts.quietPct) && 100*y.otherCPU < float64(r.opts.quietPct)
		mark := ""
		if quiet {
			qa, qb, qratios = append(qa, x.wrk.RPS), append(qb, y.wrk.RPS), append(qratios, ratio)
		} else {
			mark = " (busy)"
		}
		fmt.Fprintf(w, "| %d%s | %.0f | %.0f | %.3f | %.2f ms | %.2f ms | %s / %s | %.0f%% / %.0f%% | %v | %v |\n", i+1, mark,
			x.wrk.RPS, y.wrk.RPS, ratio, benchkit.Millis(x.wrk.P99), benchkit.Millis(y.wrk.P99), x.spread, y.spread,
			100*x.otherCPU, 100*y.otherCPU, x.parentCPU, y.parentCPU)
	}
	fmt.Fprintf(w, "| **median, all** | **%.0f** | **%.0f** | **%.3f** | %.2f ms | %.2f ms | | | | |\n",
		benchkit.Median(a), benchkit.Median(b), benchkit.Median(ratios), benchkit.Median(ap99), benchkit.Median(bp99))
	if len(qratios) > 0 && len(qratios) < len(ratios) {
		fmt.Fprintf(w, "| **median, %d quiet** | **%.0f** | **%.0f** | **%.3f** | | | | | | |\n",
			len(qratios), benchkit.Median(qa), benchkit.Median(qb), benchkit.Median(qratios))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Ratio of the medians (%s / %s), target ≥ 0.98: **%.3f** over all %d rounds", a0, b0, benchkit.Median(a)/benchkit.Median(b), len(a))
	switch {
	case len(qratios) == 0:
		fmt.Fprintf(w, " (no quiet round: the figures are not worth much)")
	case len(qratios) < len(ratios):
		fmt.Fprintf(w, ", **%.3f** over the %d quiet ones", benchkit.Median(qa)/benchkit.Median(qb), len(qratios))
	}
	fmt.Fprintf(w, ". wrk errors: %s %d, %s %d.\n\n", a0, errs[0], b0, errs[1])
}

func (r *report) pairedTables(w io.Writer, p *pairedResult) {
	a0, b0 := p.names[0], p.names[1]
	if r.opts.same != "" {
		fmt.Fprintf(w, "### Throughput, paired, A/A: two identical pools (%s vs %s) loaded at once\n\n", a0, b0)
	} else {
		fmt.Fprintf(w, "### Throughput, paired: %d workers behind a cfkd socket and the same %d started by hand, loaded at once\n\n", r.opts.workers, r.opts.workers)
	}
	where := "not pinned (fewer than 2 CPUs, or PIN=0)"
	if p.loadCPU != "" {
		where = fmt.Sprintf("the two load clients on CPU %s, both pools (parents and workers) on CPU %s", p.loadCPU, p.pools)
	}
	fmt.Fprintf(w, "%d rounds; each starts both pools afresh (which one first alternates), checks that each answers from %d pids "+
		"(%s %s, %s %s), warms both up for 1 s, then loads both at once for %d s per mode, each pool with its own "+
		"client of %d connections (the driver's `-load`), both started within about a millisecond (two pipe writes; which goes first alternates): %s. "+
		"Keep-alive: each client first places exactly %d connections on every worker (it reads the pid in the answer), so neither pool "+
		"gets a lucky spread. Requests per worker: the least and most busy worker's share of its pool's answers. "+
		"Others: the share of the machine that processes other than the benchmark's used. "+
		"Clients' CPU: what each load client used in its window (if the load CPU were the bottleneck, an even split of it "+
		"would push the ratio towards 1).\n\n",
		len(p.served[0]), r.opts.workers, a0, ints(p.served[0]), b0, ints(p.served[1]), p.secs, p.conns, where, p.conns/max(1, r.opts.workers))
	for m, mode := range pairedModes {
		fmt.Fprintf(w, "#### %s\n\n", mode.name)
		fmt.Fprintf(w, "| round | %s req/s | %s req/s | %s / %s | requests per worker, %s | requests per worker, %s | errors | others | parents' CPU | clients' CPU |\n",
			a0, b0, a0, b0, a0, b0)
		fmt.Fprintln(w, "|---|---:|---:|---:|---|---|---:|---:|---|---|")
		var ratios, a, b []float64
		var errs int64
		for i, s := range p.samples[m] {
			ratios = append(ratios, s.ratio())
			a, b = append(a, s.res[0].rps()), append(b, s.res[1].rps())
			e := s.res[0].Errors + s.res[0].Non2xx + s.res[1].Errors + s.res[1].Non2xx
			errs += e
			fmt.Fprintf(w, "| %d | %.0f | %.0f | %.3f | %s | %s | %d | %.0f%% | %v / %v | %v / %v |\n", i+1,
				s.res[0].rps(), s.res[1].rps(), s.ratio(), workerShares(s.res[0], r.opts.workers), workerShares(s.res[1], r.opts.workers),
				e, 100*s.otherCPU, s.parentCPU[0], s.parentCPU[1], s.clientCPU[0].Round(10*time.Millisecond), s.clientCPU[1].Round(10*time.Millisecond))
		}
		lo, hi := benchkit.MedianInterval(ratios, 0.95)
		fmt.Fprintf(w, "| **median** | **%.0f** | **%.0f** | **%.3f** | | | %d | | | |\n\n", benchkit.Median(a), benchkit.Median(b), benchkit.Median(ratios), errs)
		fmt.Fprintf(w, "%s / %s, median of the %d per-round ratios: **%.3f**, 95%% bootstrap interval %.3f–%.3f "+
			"(per-round ratios from %.3f to %.3f); target ≥ 0.98.\n\n",
			a0, b0, len(ratios), benchkit.Median(ratios), lo, hi, benchkit.Quantile(ratios, 0), benchkit.Quantile(ratios, 1))
	}
}

// workerShares is the least and the most busy worker's share of a run's
// answers ("24–26 %"); a worker that answered nothing counts as 0.
func workerShares(r loadResult, workers int) string {
	if r.Requests == 0 {
		return "—"
	}
	var shares []float64
	for _, n := range r.PerWorker {
		shares = append(shares, 100*float64(n)/float64(r.Requests))
	}
	for len(shares) < workers {
		shares = append(shares, 0)
	}
	return fmt.Sprintf("%.0f–%.0f %%", benchkit.Quantile(shares, 0), benchkit.Quantile(shares, 1))
}
