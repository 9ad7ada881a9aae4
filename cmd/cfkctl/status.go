package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// serviceStatus is one line of `command status`:
// name, state, pid, start_time, stop_time, proxy, fail_reason, running_cmd,
// tab separated, times in unix epoch seconds, empty fields empty.
type serviceStatus struct {
	Name       string
	State      string
	Pid        string
	Start      time.Time // zero when the service never started
	Stop       time.Time // zero when it never stopped
	Proxy      string    // the proxy's name, without the "!" that marks it down
	ProxyDown  bool
	FailReason string
	RunningCmd string
	// Notify is what the service last said with STATUS= (sd_notify); a
	// ninth field the original did not have.
	Notify string
}

// statusFields is the number of fields of a status line.
const statusFields = 9

// parseStatus reads one line of `command status`. Missing trailing fields
// are taken as empty.
func parseStatus(line string) serviceStatus {
	f := tabFields(line, statusFields)
	st := serviceStatus{
		Name:       f[0],
		State:      f[1],
		Pid:        f[2],
		Start:      epoch(f[3]),
		Stop:       epoch(f[4]),
		Proxy:      f[5],
		FailReason: f[6],
		RunningCmd: f[7],
		Notify:     strings.TrimRight(f[8], "\t"),
	}
	if p, ok := strings.CutSuffix(st.Proxy, "!"); ok {
		st.Proxy, st.ProxyDown = p, true
	}
	return st
}

// epoch reads a time in unix seconds (fractions allowed); empty, zero or
// garbage is the zero time.
func epoch(s string) time.Time {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return time.Time{}
	}
	sec, frac := math.Modf(v)
	return time.Unix(int64(sec), int64(frac*1e9))
}

// failing tells the states whose fail_reason is worth showing.
func failing(state string) bool {
	switch state {
	case "fail", "backoff", "fatal":
		return true
	}
	return false
}

// lastEvent is the later of the start and stop times: what status shows.
func (st serviceStatus) lastEvent() time.Time {
	if st.Stop.After(st.Start) {
		return st.Stop
	}
	return st.Start
}

// format renders st as a status line:
//
//	running  web                   5 minutes ago (Wed Nov 11 16:16:09 2009)
//
// with the fail reason and the proxy after it when there are some.
func (st serviceStatus) format(now time.Time, p palette) string {
	const stateWidth = 8
	state := fmt.Sprintf("%-*s", stateWidth, st.State)
	state = p.state(st.State) + state[len(st.State):]

	var b strings.Builder
	if t := st.lastEvent(); !t.IsZero() {
		fmt.Fprintf(&b, "%s %-20s %15s (%s)", state, st.Name, age(now, t), t.Local().Format(time.ANSIC))
	} else {
		fmt.Fprintf(&b, "%s %-30s", state, st.Name)
	}
	if failing(st.State) && st.FailReason != "" {
		b.WriteString("  " + st.FailReason)
	}
	if st.Proxy != "" {
		if st.ProxyDown {
			fmt.Fprintf(&b, " [proxy %s (down)]", st.Proxy)
		} else {
			fmt.Fprintf(&b, " [proxy %s]", st.Proxy)
		}
	}
	if st.Notify != "" {
		fmt.Fprintf(&b, " %q", st.Notify)
	}
	return strings.TrimRight(b.String(), " ")
}

// age says how long ago t was, as an operator reads it: "5 seconds ago",
// "3 minutes ago", "2 hours ago" within a day, then by calendar days
// ("yesterday", "4 days ago") in now's time zone.
func age(now, t time.Time) string {
	d := now.Sub(t)
	if d < 0 {
		// Clocks of cfkd and cfkctl hosts may disagree a little.
		d = 0
	}
	switch {
	case d < time.Minute:
		return ago(int(d/time.Second), "second")
	case d < time.Hour:
		return ago(int(d/time.Minute), "minute")
	case d < 24*time.Hour:
		return ago(int(d/time.Hour), "hour")
	}
	if days := calendarDays(t, now); days > 1 {
		return ago(days, "day")
	}
	return "yesterday"
}

func ago(n int, unit string) string {
	if n == 1 {
		return "1 " + unit + " ago"
	}
	return fmt.Sprintf("%d %ss ago", n, unit)
}

// calendarDays counts the midnights between t and now, in now's zone.
func calendarDays(t, now time.Time) int {
	y1, m1, d1 := t.In(now.Location()).Date()
	y2, m2, d2 := now.Date()
	// Dates at UTC noon: no daylight saving change can shift the division.
	a := time.Date(y1, m1, d1, 12, 0, 0, 0, time.UTC)
	b := time.Date(y2, m2, d2, 12, 0, 0, 0, time.UTC)
	return int(b.Sub(a) / (24 * time.Hour))
}

func (a *app) statusCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [svcref...]",
		Short: "Print the state of the services",
		Long: `Print one line per service: its state, its name, how long ago it last
started or stopped, and when. Failed services show why; services run by a
proxy show the proxy.`,
		GroupID:           groupService,
		Args:              refArgs,
		ValidArgsFunction: a.completeRefs,
		RunE: action(func(_ *cobra.Command, args []string) error {
			sels, _ := selectors(args)
			m := newMerged(firstField)
			err := a.eachSelector("status", sels, m.add)
			if asJSON {
				rows := make([]statusJSON, 0, len(m.lines))
				for _, l := range m.lines {
					rows = append(rows, parseStatus(l).json())
				}
				printJSON(a.stdout, rows)
				return err
			}
			p := a.palette()
			now := time.Now()
			for _, l := range m.lines {
				fmt.Fprintln(a.stdout, parseStatus(l).format(now, p))
			}
			return err
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: one object per service")
	return cmd
}

func (a *app) pidCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "pid SERVICE",
		Short: "Print the pid of a service",
		Long: `Print the pid of a service. The exit status is 1 when the service has no
pid (it is not running), so that scripts can test it.`,
		GroupID:           groupOther,
		Args:              cobra.MatchAll(cobra.ExactArgs(1), serviceNameArg),
		ValidArgsFunction: a.completeServices,
		RunE: action(func(_ *cobra.Command, args []string) error {
			name := args[0]
			body, err := a.request("command status service " + name)
			if err != nil {
				return err
			}
			for _, l := range body {
				st := parseStatus(l)
				if st.Name != name {
					continue
				}
				if st.Pid == "" {
					return fmt.Errorf("service '%s' has no pid (it is %s)", name, st.State)
				}
				fmt.Fprintln(a.stdout, st.Pid)
				return nil
			}
			return fmt.Errorf("no service named '%s'", name)
		}),
	}
}

// serviceNameArg checks that the one argument is a service name, not a tag
// or `all`.
func serviceNameArg(_ *cobra.Command, args []string) error {
	ref := args[0]
	if ref == selectorAll || strings.HasPrefix(ref, "@") {
		return fmt.Errorf("takes a service name, not %q", ref)
	}
	_, err := selectors(args)
	return err
}

func (a *app) pidsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "pids [svcref...]",
		Short: "Print the pids of the services",
		Long: `Print "name: pid" for each service; a service run by a proxy shows
"name: proxypid, pid".`,
		GroupID:           groupService,
		Args:              refArgs,
		ValidArgsFunction: a.completeRefs,
		RunE: action(func(_ *cobra.Command, args []string) error {
			sels, _ := selectors(args)
			m := newMerged(func(l string) string {
				name, _, _ := strings.Cut(l, ":")
				return name
			})
			if asJSON {
				// From status and proxystatus: a `pids` line of a stopped
				// proxied service ("name: PROXYPID") reads like a pid.
				return a.pidsJSON(sels)
			}
			err := a.eachSelector("pids", sels, m.add)
			a.printLines(m.lines)
			return err
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: one object per service")
	return cmd
}

// descFields is the number of fields of a `command desc` line:
// name, tags, desc, proxy, cmd, and the STATUS= a service last sent.
const descFields = 6

// formatDesc turns a `command desc` line into
// `name: tags="..." desc="..." proxy="..." cmd="..."`, leaving out empty
// fields and escaping double quotes in values.
func formatDesc(line string) string {
	f := tabFields(line, descFields)
	out := []string{f[0] + ":"}
	for i, key := range []string{"tags", "desc", "proxy", "cmd", "status"} {
		if v := f[i+1]; v != "" {
			out = append(out, key+`="`+strings.ReplaceAll(v, `"`, `\"`)+`"`)
		}
	}
	return strings.Join(out, " ")
}

func (a *app) descCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "desc [svcref...]",
		Short:             "Describe the services: tags, description, proxy, command",
		GroupID:           groupService,
		Args:              refArgs,
		ValidArgsFunction: a.completeRefs,
		RunE: action(func(_ *cobra.Command, args []string) error {
			sels, _ := selectors(args)
			m := newMerged(firstField)
			err := a.eachSelector("desc", sels, m.add)
			if asJSON {
				rows := make([]descJSON, 0, len(m.lines))
				for _, l := range m.lines {
					rows = append(rows, parseDesc(l))
				}
				printJSON(a.stdout, rows)
				return err
			}
			for _, l := range m.lines {
				fmt.Fprintln(a.stdout, formatDesc(l))
			}
			return err
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: one object per service")
	return cmd
}

// pidsJSON prints `pids --json` from the services' status (their pid and
// proxy) and the proxies' status (the proxy's pid).
func (a *app) pidsJSON(sels []string) error {
	m := newMerged(firstField)
	err := a.eachSelector("status", sels, m.add)
	proxyPid := map[string]int{}
	if body, perr := a.request("command proxystatus"); perr == nil {
		for _, l := range body {
			p := parseProxyStatus(l)
			proxyPid[p.Name] = p.Pid
		}
	}
	rows := make([]pidsJSON, 0, len(m.lines))
	for _, l := range m.lines {
		st := parseStatus(l)
		j := pidsJSON{Name: st.Name}
		j.Pid, _ = strconv.Atoi(st.Pid)
		if st.Proxy != "" && !st.ProxyDown {
			j.ProxyPid = proxyPid[st.Proxy]
		}
		rows = append(rows, j)
	}
	printJSON(a.stdout, rows)
	return err
}
