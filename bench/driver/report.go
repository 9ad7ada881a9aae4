package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

// ms formats a duration in milliseconds, with more digits when it is small.
func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f < 10:
		return fmt.Sprintf("%.2f", f)
	case f < 100:
		return fmt.Sprintf("%.1f", f)
	default:
		return fmt.Sprintf("%.0f", f)
	}
}

func medianP90(d []time.Duration) string {
	if len(d) == 0 {
		return "—"
	}
	s := summarize(d)
	return fmt.Sprintf("%s / %s", ms(s.median), ms(s.p90))
}

func orDash(d time.Duration, format func(time.Duration) string) string {
	if d == 0 {
		return "—"
	}
	return format(d)
}

func mb(kb int64) string { return fmt.Sprintf("%.1f", float64(kb)/1024) }

// machine describes where the run happened.
func machine() []string {
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(l[strings.IndexByte(l, ':')+1:])
				break
			}
		}
	}
	uname, _ := run([]string{"uname", "-a"})
	kernel, _ := run([]string{"uname", "-r"})
	mem := "unknown"
	if kb, err := statusNumber("/proc/meminfo", "MemTotal"); err == nil {
		mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	debian, _ := os.ReadFile("/etc/debian_version")
	return []string{
		"date: " + time.Now().UTC().Format("2006-01-02 15:04 MST"),
		fmt.Sprintf("nproc: %d", runtime.NumCPU()),
		"CPU: " + cpu,
		"memory: " + mem,
		"kernel: " + strings.TrimSpace(kernel),
		"uname -a: `" + strings.TrimSpace(uname) + "`",
		"Debian: " + strings.TrimSpace(string(debian)),
		"Go: " + runtime.Version(),
	}
}

func report(w io.Writer, o options, results []*result, loadBefore, loadAfter string) {
	fmt.Fprintf(w, "## Results\n\n")
	for _, l := range machine() {
		fmt.Fprintf(w, "- %s\n", l)
	}
	if c := os.Getenv("BENCH_COMMAND"); c != "" {
		fmt.Fprintf(w, "- command: `%s`\n", c)
	}
	fmt.Fprintf(w, "- load average (1 min) before / after the run: %s / %s\n", loadBefore, loadAfter)
	fmt.Fprintf(w, "- niceness of everything measured: %s\n", niceness())
	fmt.Fprintf(w, "- settings: KILLS=%d RESPAWN_SERVICES=%d SERVICES=%d STATUS_RUNS=%d IDLE_SECS=%g RETRY_BUSY=%d, kill only services older than %v\n\n",
		o.kills, o.respawnServices, o.services, o.statusRuns, o.idle.Seconds(), o.retries, o.minAge)

	n := o.services
	rows := []struct {
		label string
		cell  func(r *result) string
	}{
		{fmt.Sprintf("respawn after SIGKILL, %d services: median / p90 (ms)", o.respawnServices),
			func(r *result) string { return medianP90(r.respawnSmall) }},
		{fmt.Sprintf("respawn after SIGKILL, %d up: median / p90 (ms)", n),
			func(r *result) string { return medianP90(r.respawnLoaded) }},
		{fmt.Sprintf("start all %d, CLI: last exec (ms)", n),
			func(r *result) string { return orDash(r.upCLI, ms) }},
		{"… CLI command returned after (ms)", func(r *result) string { return orDash(r.answerCLI, ms) }},
		{fmt.Sprintf("start all %d, API: last exec (ms)", n),
			func(r *result) string { return orDash(r.upAPI, ms) }},
		{"… API call returned after (ms)", func(r *result) string { return orDash(r.answerAPI, ms) }},
		{fmt.Sprintf("down all %d, CLI: last reaped (ms)", n),
			func(r *result) string { return orDash(r.downCLI, ms) }},
		{fmt.Sprintf("down all %d, API: last reaped (ms)", n),
			func(r *result) string { return orDash(r.downAPI, ms) }},
		{fmt.Sprintf("RSS with %d up, sum (MB)", n), func(r *result) string {
			if r.mem.procs == 0 {
				return "—"
			}
			return mb(r.mem.rssKB)
		}},
		{fmt.Sprintf("PSS with %d up, sum (MB)", n), func(r *result) string {
			if r.mem.procs == 0 {
				return "—"
			}
			return mb(r.mem.pssKB)
		}},
		{"supervisor processes counted", func(r *result) string {
			if r.mem.procs == 0 {
				return "—"
			}
			return fmt.Sprint(r.mem.procs)
		}},
		{fmt.Sprintf("status of %d, CLI: median / p90 (ms)", n), func(r *result) string { return medianP90(r.statusCLI) }},
		{fmt.Sprintf("status of %d, API: median / p90 (ms)", n), func(r *result) string { return medianP90(r.statusAPI) }},
		{fmt.Sprintf("idle CPU over %gs, utime+stime (ms)", o.idle.Seconds()), func(r *result) string {
			if r.idleProcs == 0 {
				return "—"
			}
			return fmt.Sprint(r.idleTicks * 1000 / benchkit.ClockTicksPerSec)
		}},
		{fmt.Sprintf("idle CPU over %gs, schedstat (ms)", o.idle.Seconds()), func(r *result) string {
			if r.idleProcs == 0 {
				return "—"
			}
			return fmt.Sprintf("%.2f", float64(r.idleSchedNs)/1e6)
		}},
		{fmt.Sprintf("context switches over %gs", o.idle.Seconds()), func(r *result) string {
			if r.idleProcs == 0 {
				return "—"
			}
			return fmt.Sprint(r.idleSwitches)
		}},
		{fmt.Sprintf("whole machine's CPU over the same %gs (ms)", o.idle.Seconds()), func(r *result) string {
			if r.idleProcs == 0 {
				return "—"
			}
			return fmt.Sprint(r.idleMachineTicks * 1000 / benchkit.ClockTicksPerSec)
		}},
		{fmt.Sprintf("launch with %d declared services, until ready (ms)", n),
			func(r *result) string { return orDash(r.launch, ms) }},
		{"shutdown, all down (ms)", func(r *result) string { return orDash(r.shutdown, ms) }},
		{"CPU share taken by other processes during this column", func(r *result) string {
			if r.attempt == 0 {
				return "—"
			}
			return fmt.Sprintf("%.1f%%", 100*r.othersShare)
		}},
		{"attempt kept (RETRY_BUSY)", func(r *result) string {
			if r.attempt == 0 {
				return "—"
			}
			return fmt.Sprint(r.attempt)
		}},
	}

	fmt.Fprintf(w, "| measurement |")
	for _, r := range results {
		fmt.Fprintf(w, " %s |", r.name)
	}
	fmt.Fprintf(w, "\n|---|")
	for range results {
		fmt.Fprintf(w, "---:|")
	}
	fmt.Fprintln(w)
	for _, row := range rows {
		fmt.Fprintf(w, "| %s |", row.label)
		for _, r := range results {
			fmt.Fprintf(w, " %s |", row.cell(r))
		}
		fmt.Fprintln(w)
	}

	fmt.Fprintf(w, "\n### Respawn detail (ms)\n\n| supervisor | instance | kills | min | median | p90 | max |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		for _, x := range []struct {
			label string
			d     []time.Duration
		}{{fmt.Sprintf("%d services", o.respawnServices), r.respawnSmall}, {fmt.Sprintf("%d up", n), r.respawnLoaded}} {
			if len(x.d) == 0 {
				continue
			}
			s := summarize(x.d)
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s |\n", r.name, x.label, s.n, ms(s.min), ms(s.median), ms(s.p90), ms(s.max))
		}
	}

	fmt.Fprintf(w, "\n### Versions and tuning\n\n")
	for _, r := range results {
		fmt.Fprintf(w, "- **%s** (%s): %s\n", r.name, r.version, r.tuning)
	}
	var problems []string
	for _, r := range results {
		for _, e := range r.errs {
			problems = append(problems, fmt.Sprintf("- %s: %s", r.name, e))
		}
	}
	if len(problems) > 0 {
		fmt.Fprintf(w, "\n### Problems during the run\n\n%s\n", strings.Join(problems, "\n"))
	}
}
