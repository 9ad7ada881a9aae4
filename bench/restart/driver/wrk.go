package main

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

// wrkResult is what one wrk run printed.
type wrkResult struct {
	requests int64
	rps      float64
	p50, p99 time.Duration
	// Socket errors and non-2xx/3xx answers.
	connect, read, write, timeout, non2xx int64
}

func (r wrkResult) errors() int64 {
	return r.connect + r.read + r.write + r.timeout + r.non2xx
}

// wrkRun is a wrk started in the background.
type wrkRun struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	args []string
}

// startWrk starts wrk with --latency against url.
func startWrk(threads, conns int, dur time.Duration, url string) (*wrkRun, error) {
	w := &wrkRun{args: []string{fmt.Sprintf("-t%d", threads), fmt.Sprintf("-c%d", conns),
		fmt.Sprintf("-d%ds", int(dur.Seconds())), "--latency", url}}
	w.cmd = exec.Command("wrk", w.args...)
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
	if err := w.cmd.Start(); err != nil {
		return nil, fmt.Errorf("wrk: %w", err)
	}
	return w, nil
}

// wait waits for wrk to end and parses its report; the report is kept
// in saveAs, for a look at the whole latency distribution.
func (w *wrkRun) wait(saveAs string) (wrkResult, error) {
	err := w.cmd.Wait()
	_ = os.WriteFile(saveAs, []byte("wrk "+strings.Join(w.args, " ")+"\n"+w.out.String()), 0o644)
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s", strings.Join(w.args, " "), err, w.out.String())
	}
	r, err := parseWrk(w.out.String())
	if err != nil {
		return r, fmt.Errorf("%w\n%s", err, w.out.String())
	}
	return r, nil
}

var (
	wrkPercentile = regexp.MustCompile(`^\s*(50|99)(?:\.0+)?%\s+(\S+)`)
	wrkRequests   = regexp.MustCompile(`^\s*(\d+) requests in`)
	wrkErrors     = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx     = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkRPS        = regexp.MustCompile(`^Requests/sec:\s+([0-9.]+)`)
)

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
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
				r.p50 = d
			} else {
				r.p99 = d
			}
		}
		if m := wrkRequests.FindStringSubmatch(line); m != nil {
			r.requests, _ = strconv.ParseInt(m[1], 10, 64)
		}
		if m := wrkErrors.FindStringSubmatch(line); m != nil {
			r.connect, _ = strconv.ParseInt(m[1], 10, 64)
			r.read, _ = strconv.ParseInt(m[2], 10, 64)
			r.write, _ = strconv.ParseInt(m[3], 10, 64)
			r.timeout, _ = strconv.ParseInt(m[4], 10, 64)
		}
		if m := wrkNon2xx.FindStringSubmatch(line); m != nil {
			r.non2xx, _ = strconv.ParseInt(m[1], 10, 64)
		}
		if m := wrkRPS.FindStringSubmatch(line); m != nil {
			r.rps, _ = strconv.ParseFloat(m[1], 64)
			sawRPS = true
		}
	}
	if !sawRPS {
		return r, fmt.Errorf("no Requests/sec line in wrk's output")
	}
	return r, nil
}

// parseWrkDuration reads wrk's "812.00us", "2.10ms", "1.02s", "1.50m".
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
