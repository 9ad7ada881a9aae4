package benchkit

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Wrk is how to run wrk: always with --latency, for its percentiles.
type Wrk struct {
	Threads, Conns int
	// Duration is wrk's -d, in whole seconds.
	Duration time.Duration
	// CloseConns makes every request ask for "Connection: close", so each
	// one is a new connection through the accept queue.
	CloseConns bool
}

// Args is wrk's command line after "wrk", against url.
func (w Wrk) Args(url string) []string {
	args := []string{fmt.Sprintf("-t%d", w.Threads), fmt.Sprintf("-c%d", w.Conns),
		fmt.Sprintf("-d%ds", int(w.Duration.Seconds())), "--latency"}
	if w.CloseConns {
		args = append(args, "-H", "Connection: close")
	}
	return append(args, url)
}

// WrkRun is a wrk started in the background.
type WrkRun struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	args []string
}

// Start starts wrk against url and returns at once.
func (w Wrk) Start(url string) (*WrkRun, error) {
	r := &WrkRun{args: w.Args(url)}
	r.cmd = exec.Command("wrk", r.args...)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("wrk %s: %w", strings.Join(r.args, " "), err)
	}
	return r, nil
}

// Run runs wrk against url to its end and reads its report.
func (w Wrk) Run(url string) (WrkResult, error) {
	r, err := w.Start(url)
	if err != nil {
		return WrkResult{}, err
	}
	return r.Wait("")
}

// Wait waits for wrk to end and reads its report. Unless saveAs is "",
// the command line and the whole report are kept in that file, for a
// look at the whole latency distribution. An error carries wrk's output.
func (r *WrkRun) Wait(saveAs string) (WrkResult, error) {
	err := r.cmd.Wait()
	if saveAs != "" {
		_ = os.WriteFile(saveAs, []byte("wrk "+strings.Join(r.args, " ")+"\n"+r.out.String()), 0o644)
	}
	if err != nil {
		return WrkResult{}, fmt.Errorf("wrk %s: %w\n%s", strings.Join(r.args, " "), err, r.out.String())
	}
	res, err := parseWrk(r.out.String())
	if err != nil {
		return res, fmt.Errorf("%w\n%s", err, r.out.String())
	}
	return res, nil
}

// WrkResult is what one wrk run printed.
type WrkResult struct {
	Requests int64
	RPS      float64
	P50, P99 time.Duration
	// Socket errors, then the answers with a status other than 2xx or 3xx.
	Connect, Read, Write, Timeout, Non2xx int64
}

// Errors is every failed request, as wrk counts them: socket errors
// (connect, read, write, timeout) and non-2xx/3xx answers.
func (r WrkResult) Errors() int64 {
	return r.Connect + r.Read + r.Write + r.Timeout + r.Non2xx
}

// The lines of wrk's --latency report that a WrkResult is read from.
var (
	wrkPercentile = regexp.MustCompile(`^\s*(50|99)(?:\.0+)?%\s+(\S+)`)
	wrkRequests   = regexp.MustCompile(`^\s*(\d+) requests in`)
	wrkErrors     = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx     = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkRPS        = regexp.MustCompile(`^Requests/sec:\s+([0-9.]+)`)
)

// parseWrk reads wrk's report. wrk leaves out the error lines when
// there were none; the Requests/sec line is always there.
func parseWrk(out string) (WrkResult, error) {
	var r WrkResult
	var sawRPS bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := wrkPercentile.FindStringSubmatch(line); m != nil {
			d, err := parseWrkDuration(m[2])
			if err != nil {
				return r, err
			}
			if m[1] == "50" {
				r.P50 = d
			} else {
				r.P99 = d
			}
		}
		if m := wrkRequests.FindStringSubmatch(line); m != nil {
			r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
		}
		if m := wrkErrors.FindStringSubmatch(line); m != nil {
			r.Connect, _ = strconv.ParseInt(m[1], 10, 64)
			r.Read, _ = strconv.ParseInt(m[2], 10, 64)
			r.Write, _ = strconv.ParseInt(m[3], 10, 64)
			r.Timeout, _ = strconv.ParseInt(m[4], 10, 64)
		}
		if m := wrkNon2xx.FindStringSubmatch(line); m != nil {
			r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
		}
		if m := wrkRPS.FindStringSubmatch(line); m != nil {
			r.RPS, _ = strconv.ParseFloat(m[1], 64)
			sawRPS = true
		}
	}
	if !sawRPS {
		return r, fmt.Errorf("no Requests/sec line in wrk's output")
	}
	return r, nil
}

// parseWrkDuration reads wrk's "812.00us", "2.10ms", "1.02s", "1.50m".
// "us" and "ms" are tried before "s", which ends them too.
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"m", time.Minute}, {"s", time.Second}}
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			v, err := strconv.ParseFloat(strings.TrimSuffix(s, u.suffix), 64)
			if err != nil {
				return 0, fmt.Errorf("wrk duration %q: %w", s, err)
			}
			return time.Duration(v * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("wrk duration %q: unknown unit", s)
}
