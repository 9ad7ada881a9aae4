package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// pool is one of the two pools of the throughput comparison.
type pool struct {
	name string
	url  string
	pid  int // the process whose CPU is watched: cfkd, or the launcher
}

// runSample is one wrk run against one pool, and the CPU its parent used.
type runSample struct {
	wrk       wrkResult
	parentCPU time.Duration
	// otherCPU is the share of the machine (0..1) that user processes
	// other than the benchmark's used during the run.
	otherCPU float64
}

type throughputResult struct {
	pools   [2]pool
	samples [2][]runSample
	served  [2]int // distinct worker pids seen answering before the runs
	wrkArgs string
}

// throughput starts 4 workers under cfkd and 4 by hand, then measures
// both with wrk in alternating rounds (ABBA order, so a drift of the
// machine weighs on both alike).
func throughput(o options) (*throughputResult, error) {
	dir := filepath.Join(o.work, "throughput")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c, err := startCfkd(o.cfkd, filepath.Join(dir, "cfkd"))
	if err != nil {
		return nil, err
	}
	defer c.shutdown()
	lines := []string{"socket web host=127.0.0.1", "socket web service=0", "command bind web"}
	for i := 1; i <= o.workers; i++ {
		s := fmt.Sprintf("w%d", i)
		lines = append(lines,
			fmt.Sprintf("service %s cmd=[%q]", s, o.worker),
			fmt.Sprintf("service %s sockets=web", s),
			fmt.Sprintf("service %s tags=web", s),
			fmt.Sprintf("service %s startwait_secs=0.2", s))
	}
	lines = append(lines, "command start tag web")
	if _, err := c.do(lines...); err != nil {
		return nil, err
	}
	addr, err := c.socketAddr("web")
	if err != nil {
		return nil, err
	}

	addrFile := filepath.Join(dir, "byhand.addr")
	self, _ := os.Executable()
	l, err := start(filepath.Join(dir, "byhand.out"), nil, self, "-launch", "-worker", o.worker,
		"-workers", fmt.Sprint(o.workers), "-addr-file", addrFile)
	if err != nil {
		return nil, err
	}
	defer l.stop(10 * time.Second)
	var handAddr string
	if !waitFor(10*time.Second, 10*time.Millisecond, func() bool {
		b, err := os.ReadFile(addrFile)
		handAddr = strings.TrimSpace(string(b))
		return err == nil
	}) {
		return nil, fmt.Errorf("the by-hand launcher did not bind (see %s/byhand.out)", dir)
	}

	r := &throughputResult{
		pools: [2]pool{
			{name: "cfkd", url: "http://" + addr + "/", pid: c.proc.pid()},
			{name: "by hand", url: "http://" + handAddr + "/", pid: l.pid()},
		},
		wrkArgs: fmt.Sprintf("wrk -t%d -c%d -d%ds --latency", o.wrkThreads, o.wrkConns, int(o.wrkDur.Seconds())),
	}
	for i, p := range r.pools {
		n, err := distinctWorkers(p.url, o.workers, 10*time.Second)
		if err != nil {
			return nil, fmt.Errorf("%s pool: %w", p.name, err)
		}
		r.served[i] = n
		// Warm-up: Go's runtime and the kernel's caches, not recorded.
		if _, out, err := runWrk(o.wrkThreads, o.wrkConns, 2*time.Second, p.url); err != nil {
			return nil, fmt.Errorf("%v\n%s", err, out)
		}
	}
	for round := 0; round < o.rounds; round++ {
		order := []int{0, 1}
		if round%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			p := r.pools[i]
			before, _ := cpuTime(p.pid)
			others0, t0 := otherCPU(), time.Now()
			w, out, err := runWrk(o.wrkThreads, o.wrkConns, o.wrkDur, p.url)
			if err != nil {
				return nil, fmt.Errorf("%v\n%s", err, out)
			}
			others1, t1 := otherCPU(), time.Now()
			after, _ := cpuTime(p.pid)
			share := float64(others1-others0) / (float64(t1.Sub(t0)) * float64(runtime.NumCPU()))
			r.samples[i] = append(r.samples[i], runSample{wrk: w, parentCPU: after - before, otherCPU: share})
			logf("throughput round %d %s: %.0f req/s, p99 %v, errors %d, parent CPU %v, other processes %.0f%% of the machine",
				round+1, p.name, w.rps, w.p99, w.errors(), after-before, 100*share)
		}
	}
	return r, nil
}

// distinctWorkers asks the pool on fresh connections until it has heard
// n different pids ("hello from NAME pid N"), or timeout passes.
func distinctWorkers(url string, n int, timeout time.Duration) (int, error) {
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	seen := map[string]bool{}
	deadline := time.Now().Add(timeout)
	var lastErr error
	for len(seen) < n && time.Now().Before(deadline) {
		resp, err := cl.Get(url)
		if err != nil {
			lastErr = err
			time.Sleep(10 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if f := strings.Fields(string(b)); len(f) >= 2 && f[len(f)-2] == "pid" {
			seen[f[len(f)-1]] = true
		}
	}
	if len(seen) == 0 && lastErr != nil {
		return 0, lastErr
	}
	return len(seen), nil
}
