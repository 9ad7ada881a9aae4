package examples

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// wrk drives the load. Its Lua hooks count the answers per pid found in
// the body ("... pid N"), so a test can tell that every worker served.

// wrkThreads and wrkConns: two load threads for a two-core machine, and
// more connections than workers, so that every worker has work queued.
const (
	wrkThreads = 2
	wrkConns   = 16
)

// pidCounter runs in each wrk thread (response) and in the main thread at
// the end (done), which collects the threads' tables and prints them.
const pidCounter = `
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) pids = {} end
function response(status, headers, body)
  local pid = body:match("pid (%d+)")
  if pid then pids[pid] = (pids[pid] or 0) + 1 end
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for pid, n in pairs(t:get("pids")) do io.write(string.format("pid %s %d\n", pid, n)) end
  end
end
`

// wrkResult is what wrk printed, parsed.
type wrkResult struct {
	requests                      int
	perSec                        float64
	connect, read, write, timeout int         // "Socket errors: ..."
	non2xx                        int         // "Non-2xx or 3xx responses: ..."
	pids                          map[int]int // answers per pid named in the body
	output                        string
}

var (
	wrkRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	wrkPerSec   = regexp.MustCompile(`(?m)^Requests/sec:\s+([\d.]+)`)
	wrkSockErrs = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx   = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses: (\d+)`)
	wrkPid      = regexp.MustCompile(`(?m)^pid (\d+) (\d+)$`)
)

// parseWrk reads wrk's report. wrk prints the error lines only when
// there were errors, so their absence means zero.
func parseWrk(out string) (wrkResult, error) {
	r := wrkResult{output: out, pids: map[int]int{}}
	m := wrkRequests.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no request count in wrk's output")
	}
	r.requests, _ = strconv.Atoi(m[1])
	if m := wrkPerSec.FindStringSubmatch(out); m != nil {
		r.perSec, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := wrkSockErrs.FindStringSubmatch(out); m != nil {
		r.connect, _ = strconv.Atoi(m[1])
		r.read, _ = strconv.Atoi(m[2])
		r.write, _ = strconv.Atoi(m[3])
		r.timeout, _ = strconv.Atoi(m[4])
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.non2xx, _ = strconv.Atoi(m[1])
	}
	for _, m := range wrkPid.FindAllStringSubmatch(out, -1) {
		pid, _ := strconv.Atoi(m[1])
		n, _ := strconv.Atoi(m[2])
		r.pids[pid] += n // one line per wrk thread
	}
	return r, nil
}

func (r wrkResult) String() string {
	pids := make([]int, 0, len(r.pids))
	for p := range r.pids {
		pids = append(pids, p)
	}
	sort.Ints(pids)
	per := make([]string, len(pids))
	for i, p := range pids {
		per[i] = fmt.Sprintf("%d:%d", p, r.pids[p])
	}
	return fmt.Sprintf("%d requests, %.0f req/s, socket errors connect %d read %d write %d timeout %d, non-2xx %d, per pid [%s]",
		r.requests, r.perSec, r.connect, r.read, r.write, r.timeout, r.non2xx, strings.Join(per, " "))
}

// wrkRun is a wrk running in the background.
type wrkRun struct {
	t *testing.T
	p *proc
}

// startWrk starts wrk against url for at most maxDur; extra are more wrk
// flags (headers). Stop it with stop, or let it finish with wait.
func startWrk(t *testing.T, url string, maxDur time.Duration, extra ...string) *wrkRun {
	t.Helper()
	return startWrkWith(t, url, maxDur, wrkThreads, wrkConns, extra...)
}

// startWrkWith is startWrk with threads threads and conns connections.
func startWrkWith(t *testing.T, url string, maxDur time.Duration, threads, conns int, extra ...string) *wrkRun {
	t.Helper()
	wrk := requireTool(t, "wrk")
	dir := t.TempDir()
	script := writeFile(t, filepath.Join(dir, "pids.lua"), pidCounter)
	argv := []string{wrk, "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", fmt.Sprintf("%ds", int(maxDur.Seconds()+0.5)), "-s", script}
	argv = append(append(argv, extra...), url)
	return &wrkRun{t: t, p: startProc(t, dir, "wrk", nil, argv...)}
}

// runWrk runs wrk for d and returns its figures.
func runWrk(t *testing.T, url string, d time.Duration, extra ...string) wrkResult {
	t.Helper()
	return startWrk(t, url, d, extra...).wait(d + stopTimeout)
}

// stop ends the load now: wrk takes SIGINT as "stop and report".
func (w *wrkRun) stop() wrkResult {
	w.t.Helper()
	_ = syscall.Kill(w.p.cmd.Process.Pid, syscall.SIGINT)
	return w.wait(stopTimeout)
}

func (w *wrkRun) wait(timeout time.Duration) wrkResult {
	w.t.Helper()
	select {
	case <-w.p.done:
	case <-time.After(timeout):
		w.t.Fatalf("wrk did not finish within %v", timeout)
	}
	if w.p.err != nil {
		w.t.Fatalf("wrk: %v\n%s", w.p.err, tail(w.p.log))
	}
	out, err := os.ReadFile(w.p.log)
	if err != nil {
		w.t.Fatal(err)
	}
	r, err := parseWrk(string(out))
	if err != nil {
		w.t.Fatalf("%v:\n%s", err, out)
	}
	w.t.Logf("wrk: %v", r)
	return r
}

// requireClean fails the test unless wrk saw no socket error of any kind
// and no answer other than 2xx, and every answer named one of the pids.
func requireClean(t *testing.T, r wrkResult) {
	t.Helper()
	if r.connect+r.read+r.write+r.timeout != 0 || r.non2xx != 0 {
		t.Fatalf("wrk saw errors: %v\n%s", r, r.output)
	}
	if r.requests == 0 {
		t.Fatalf("wrk made no request:\n%s", r.output)
	}
	counted := 0
	for _, n := range r.pids {
		counted += n
	}
	if counted != r.requests {
		t.Fatalf("%d requests but %d answers named a pid:\n%s", r.requests, counted, r.output)
	}
}

// requireEveryPid fails the test unless each pid served some requests.
func requireEveryPid(t *testing.T, r wrkResult, pids []int) {
	t.Helper()
	for _, p := range pids {
		if r.pids[p] == 0 {
			t.Errorf("pid %d served no request under load: %v", p, r)
		}
	}
}

func TestParseWrk(t *testing.T) {
	// wrk 4.1's report, as printed after the done() hook.
	const out = `Running 3s test @ http://127.0.0.1:41234/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms    1.10ms  21.33ms   90.12%
    Req/Sec     8.51k   612.30     9.80k    70.00%
  50808 requests in 3.00s, 7.12MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:  16932.41
Transfer/sec:      2.37MB
pid 101 20000
pid 102 5404
pid 101 25404
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.requests != 50808 || r.perSec != 16932.41 || r.connect != 0 || r.read != 3 || r.write != 1 || r.timeout != 2 || r.non2xx != 5 {
		t.Fatalf("parsed %v", r)
	}
	if r.pids[101] != 45404 || r.pids[102] != 5404 || len(r.pids) != 2 {
		t.Fatalf("pids %v", r.pids)
	}
	// No error lines: zero errors.
	r, err = parseWrk("  10 requests in 1.00s, 1KB read\nRequests/sec: 10.00\n")
	if err != nil || r.requests != 10 || r.connect+r.read+r.write+r.timeout+r.non2xx != 0 {
		t.Fatalf("parsed %v, %v", r, err)
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Fatal("a failed run parsed")
	}
}
