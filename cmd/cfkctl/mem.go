package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// memRow is one line of `command mem`: what a service's process group (or
// a proxy) uses, in KiB.
type memRow struct {
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	Pid        int    `json:"pid,omitempty"`
	RSSKiB     uint64 `json:"rss_kib"`
	PSSKiB     uint64 `json:"pss_kib"`
	PrivateKiB uint64 `json:"private_kib"`
	Procs      int    `json:"procs"`
}

func parseMemRow(line string) memRow {
	f := strings.Split(line, "\t")
	for len(f) < 7 {
		f = append(f, "")
	}
	r := memRow{Kind: f[0], Name: f[1]}
	r.Pid, _ = strconv.Atoi(f[2])
	r.RSSKiB, _ = strconv.ParseUint(f[3], 10, 64)
	r.PSSKiB, _ = strconv.ParseUint(f[4], 10, 64)
	r.PrivateKiB, _ = strconv.ParseUint(f[5], 10, 64)
	r.Procs, _ = strconv.Atoi(f[6])
	return r
}

// memTotal adds up the rows: PSS adds up to what the pool really costs;
// RSS counts shared pages once per process and so overstates it.
func memTotal(rows []memRow) memRow {
	t := memRow{Kind: "total"}
	for _, r := range rows {
		t.RSSKiB += r.RSSKiB
		t.PSSKiB += r.PSSKiB
		t.PrivateKiB += r.PrivateKiB
		t.Procs += r.Procs
	}
	return t
}

// human prints KiB as a short size.
func human(kib uint64) string {
	switch {
	case kib >= 10<<20:
		return fmt.Sprintf("%.0fG", float64(kib)/(1<<20))
	case kib >= 1<<20:
		return fmt.Sprintf("%.1fG", float64(kib)/(1<<20))
	case kib >= 10<<10:
		return fmt.Sprintf("%.0fM", float64(kib)/(1<<10))
	case kib >= 1<<10:
		return fmt.Sprintf("%.1fM", float64(kib)/(1<<10))
	}
	return fmt.Sprintf("%dK", kib)
}

func formatMem(rows []memRow) []string {
	line := func(kind, name, pid, rss, pss, priv, procs string) string {
		return strings.TrimRight(fmt.Sprintf("%-8s %-20s %7s %8s %8s %8s %5s", kind, name, pid, rss, pss, priv, procs), " ")
	}
	out := []string{line("KIND", "NAME", "PID", "RSS", "PSS", "PRIVATE", "PROCS")}
	for _, r := range rows {
		pid := ""
		if r.Pid != 0 {
			pid = strconv.Itoa(r.Pid)
		}
		out = append(out, line(r.Kind, r.Name, pid, human(r.RSSKiB), human(r.PSSKiB), human(r.PrivateKiB), strconv.Itoa(r.Procs)))
	}
	t := memTotal(rows)
	return append(out, line("total", "", "", human(t.RSSKiB), human(t.PSSKiB), human(t.PrivateKiB), strconv.Itoa(t.Procs)))
}

func (a *app) memCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "mem [svcref...]",
		Short: "Print the memory of services and their proxies (RSS, PSS, private)",
		Long: `Print what each service (its whole process group) and each of their proxies
uses, from /proc/PID/smaps_rollup, with totals. PSS splits shared pages
between the processes that share them, so it adds up to what a pool really
costs; RSS counts a shared page once in every process.`,
		GroupID:           groupService,
		Args:              refArgs,
		ValidArgsFunction: a.completeRefs,
		RunE: action(func(_ *cobra.Command, args []string) error {
			sels, _ := selectors(args)
			m := newMerged(func(l string) string {
				f := strings.SplitN(l, "\t", 3)
				if len(f) < 2 {
					return l
				}
				return f[0] + "\t" + f[1]
			})
			err := a.eachSelector("mem", sels, m.add)
			rows := make([]memRow, 0, len(m.lines))
			for _, l := range m.lines {
				rows = append(rows, parseMemRow(l))
			}
			if asJSON {
				printJSON(a.stdout, struct {
					Rows  []memRow `json:"rows"`
					Total memRow   `json:"total"`
				}{rows, memTotal(rows)})
				return err
			}
			for _, l := range formatMem(rows) {
				fmt.Fprintln(a.stdout, l)
			}
			return err
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
