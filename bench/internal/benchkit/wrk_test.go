package benchkit

import (
	"strings"
	"testing"
	"time"
)

// wrkNon2xxSample is wrk 4.1's report of a run against python3 -m
// http.server, asking for a path it does not have.
const wrkNon2xxSample = `Running 1s test @ http://127.0.0.1:18765/nope
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.20ms    3.22ms  21.16ms   80.56%
    Req/Sec     1.04k   234.89     1.48k    70.00%
  Latency Distribution
     50%    3.30ms
     75%    5.56ms
     90%    8.60ms
     99%   15.50ms
  1034 requests in 1.00s, 525.26KB read
  Non-2xx or 3xx responses: 1034
Requests/sec:   1031.44
Transfer/sec:    523.96KB
`

// wrkSocketErrorsSample is wrk 4.1's report of a run against a server
// that dropped every seventh request and stalled on some (-T1s).
const wrkSocketErrorsSample = `Running 2s test @ http://127.0.0.1:18766/
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   366.51us    1.97ms  19.52ms   97.06%
    Req/Sec     1.02k     0.92k    2.16k    60.00%
  Latency Distribution
     50%   37.00us
     75%   88.00us
     90%  179.00us
     99%    9.76ms
  722 requests in 2.00s, 28.91KB read
  Socket errors: connect 0, read 122, write 0, timeout 8
Requests/sec:    360.40
Transfer/sec:     14.43KB
`

func TestParseWrk(t *testing.T) {
	for _, tc := range []struct {
		name   string
		out    string
		want   WrkResult
		errors int64
	}{
		{"non-2xx", wrkNon2xxSample, WrkResult{
			Requests: 1034, RPS: 1031.44,
			P50: 3300 * time.Microsecond, P99: 15500 * time.Microsecond,
			Non2xx: 1034,
		}, 1034},
		{"socket errors", wrkSocketErrorsSample, WrkResult{
			Requests: 722, RPS: 360.40,
			P50: 37 * time.Microsecond, P99: 9760 * time.Microsecond,
			Read: 122, Timeout: 8,
		}, 130},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseWrk(tc.out)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("parseWrk:\n got %+v\nwant %+v", got, tc.want)
			}
			if got.Errors() != tc.errors {
				t.Errorf("Errors() = %d, want %d", got.Errors(), tc.errors)
			}
		})
	}
}

func TestParseWrkFailures(t *testing.T) {
	// A wrk that died before its summary: no Requests/sec line.
	cut := wrkNon2xxSample[:strings.Index(wrkNon2xxSample, "Requests/sec")]
	if _, err := parseWrk(cut); err == nil || !strings.Contains(err.Error(), "Requests/sec") {
		t.Errorf("report without Requests/sec: err = %v", err)
	}
	bad := strings.Replace(wrkNon2xxSample, "15.50ms", "15.50hours", 1)
	if _, err := parseWrk(bad); err == nil {
		t.Error("a percentile in an unknown unit: no error")
	}
}

func TestParseWrkDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"812.00us", 812 * time.Microsecond},
		{"2.10ms", 2100 * time.Microsecond},
		{"1.02s", 1020 * time.Millisecond},
		{"1.50m", 90 * time.Second},
		{"0.00us", 0},
	} {
		got, err := parseWrkDuration(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "12", "1.5h", "ms", "x.yus"} {
		if d, err := parseWrkDuration(in); err == nil {
			t.Errorf("parseWrkDuration(%q) = %v, want an error", in, d)
		}
	}
}

func TestWrkArgs(t *testing.T) {
	w := Wrk{Threads: 2, Conns: 32, Duration: 10 * time.Second}
	if got, want := strings.Join(w.Args("http://x/"), " "), "-t2 -c32 -d10s --latency http://x/"; got != want {
		t.Errorf("Args = %q, want %q", got, want)
	}
	w.CloseConns = true
	if got, want := strings.Join(w.Args("http://x/"), " "), "-t2 -c32 -d10s --latency -H Connection: close http://x/"; got != want {
		t.Errorf("Args with CloseConns = %q, want %q", got, want)
	}
}

// FuzzParseWrk: wrk's output is outside input; whatever it prints, the
// parser returns without panicking, and never a negative count.
func FuzzParseWrk(f *testing.F) {
	f.Add(wrkNon2xxSample)
	f.Add(wrkSocketErrorsSample)
	f.Add("     50%   -1.00us\nRequests/sec: 1\n")
	f.Fuzz(func(t *testing.T, out string) {
		r, err := parseWrk(out)
		if err == nil && (r.Requests < 0 || r.RPS < 0) {
			t.Errorf("negative count from %q: %+v", out, r)
		}
	})
}
