package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

// pool is one of the two pools of the throughput comparison.
type pool struct {
	name string
	url  string
	port string
	pid  int // the process whose CPU is watched: cfkd, or the launcher
	stop func()
}

// runSample is one wrk run against one pool.
type runSample struct {
	wrk       benchkit.WrkResult
	parentCPU time.Duration
	// otherCPU is the share of the machine (0..1) that user processes
	// other than the benchmark's used during the run.
	otherCPU float64
	// spread is how wrk's keep-alive connections fell on the workers,
	// most loaded first ("16+16+0+0"), read in the middle of the run.
	spread string
}

// A load mode is how wrk treats its connections.
type loadMode struct {
	name       string
	closeConns bool
}

var loadModes = []loadMode{
	{"keep-alive (wrk's default)", false},
	{"`-H \"Connection: close\"` (a new connection per request)", true},
}

type throughputResult struct {
	names   [2]string        // the pools' names, for the report
	samples [][2][]runSample // per load mode, per pool
	served  [2][]int         // distinct worker pids seen answering, per round
	wrkArgs string
}

// throughput measures, o.rounds times, a fresh pool of workers under cfkd
// and a fresh pool started by hand, one after the other (ABBA order over
// the rounds, so a drift of the machine weighs on both alike).
//
// Fresh pools every round, because wrk's connections are keep-alive: the
// way its 32 connections fall on the 4 workers when it connects decides
// the run (a pool whose connections crowd on two workers does more
// requests a second on two cores than one spread evenly), and that
// spread tends to repeat for the same processes, round after round.
func throughput(o options) (*throughputResult, error) {
	r := &throughputResult{
		samples: make([][2][]runSample, len(loadModes)),
		wrkArgs: fmt.Sprintf("wrk -t%d -c%d -d%ds --latency", o.wrkThreads, o.wrkConns, int(o.wrkDur.Seconds())),
	}
	err := eachRound(o, o.rounds, "throughput", "", false, func(round int, _ string, pools [2]*pool) error {
		r.names = [2]string{pools[0].name, pools[1].name}
		return r.round(o, round, pools)
	})
	return r, err
}

// eachRound runs rounds of a throughput phase: for each, a directory of
// its own (prefix-N), fresh pools (see newPools; alternate starts them in
// turn), then f with the round's directory, then both pools stopped
// whatever f said.
func eachRound(o options, rounds int, prefix, pin string, alternate bool, f func(round int, dir string, pools [2]*pool) error) error {
	for round := 0; round < rounds; round++ {
		dir := filepath.Join(o.work, fmt.Sprintf("%s-%d", prefix, round+1))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		pools, err := newPools(o, dir, pin, alternate && round%2 == 1)
		if err != nil {
			return err
		}
		err = f(round, dir, pools)
		pools[0].stop()
		pools[1].stop()
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *throughputResult) round(o options, round int, pools [2]*pool) error {
	for i, p := range pools {
		n, err := distinctWorkers(p.url, o.workers, 10*time.Second)
		if err != nil {
			return fmt.Errorf("%s pool: %w", p.name, err)
		}
		r.served[i] = append(r.served[i], n)
		// Warm-up: Go's runtime and the kernel's caches, not recorded.
		if _, err := o.wrk(time.Second, false).Run(p.url); err != nil {
			return err
		}
	}
	order := []int{0, 1}
	if round%2 == 1 {
		order = []int{1, 0}
	}
	for m, mode := range loadModes {
		for _, i := range order {
			if err := r.run(o, round, m, mode, i, pools[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// run is one wrk run of one load mode against one pool.
func (r *throughputResult) run(o options, round, m int, mode loadMode, i int, p *pool) error {
	before := cpuTime(p.pid)
	others0, t0 := benchkit.OtherCPU(), time.Now()
	spread := make(chan string, 1)
	go func() {
		if mode.closeConns {
			spread <- "—" // connections live for one request
			return
		}
		time.Sleep(o.wrkDur / 2)
		spread <- connSpread(p.port, o.workers)
	}()
	w, err := o.wrk(o.wrkDur, mode.closeConns).Run(p.url)
	if err != nil {
		return err
	}
	others1, t1 := benchkit.OtherCPU(), time.Now()
	after := cpuTime(p.pid)
	share := benchkit.OtherShare(others0, others1, t1.Sub(t0))
	s := runSample{wrk: w, parentCPU: after - before, otherCPU: share, spread: <-spread}
	r.samples[m][i] = append(r.samples[m][i], s)
	benchkit.Logf("throughput round %d, %s, %s: %.0f req/s, p99 %v, errors %d, connections per worker %s, parent CPU %v, other processes %.0f%% of the machine",
		round+1, mode.name, p.name, w.RPS, w.P99, w.Errors(), s.spread, s.parentCPU, 100*share)
	return nil
}

// newPools starts the two pools of a round: a cfkd pool and a by-hand
// pool, or with o.same ("cfkd" or "hand") two pools of one kind, an A/A
// run that shows how far apart two identical pools land on this machine.
// pin, when set, is the taskset CPU list both pools run on; reversed
// starts the second pool first.
func newPools(o options, dir, pin string, reversed bool) ([2]*pool, error) {
	var pools [2]*pool
	kinds := [2]string{"cfkd", "hand"}
	if o.same != "" {
		kinds = [2]string{o.same, o.same}
	}
	order := []int{0, 1}
	if reversed {
		order = []int{1, 0}
	}
	for n, i := range order {
		kind := kinds[i]
		d := dir
		if o.same != "" {
			d = filepath.Join(dir, string(rune('a'+i)))
		}
		var err error
		if err = os.MkdirAll(d, 0o755); err == nil {
			if kind == "cfkd" {
				pools[i], err = cfkdPool(o, d, pin)
			} else {
				pools[i], err = handPool(o, d, pin)
			}
		}
		if err != nil {
			if n == 1 {
				pools[order[0]].stop()
			}
			return pools, err
		}
		if o.same != "" {
			pools[i].name += string(rune('A' + i))
		}
	}
	return pools, nil
}

// cfkdPool starts a cfkd with o.workers services of the worker on one
// socket.
func cfkdPool(o options, dir, pin string) (*pool, error) {
	c, err := startCfkd(o.cfkd, filepath.Join(dir, "cfkd"), pin)
	if err != nil {
		return nil, err
	}
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
		c.shutdown()
		return nil, err
	}
	addr, err := c.socketAddr("web")
	if err != nil {
		c.shutdown()
		return nil, err
	}
	_, port, _ := strings.Cut(addr, ":")
	return &pool{name: "cfkd", url: "http://" + addr + "/", port: port, pid: c.proc.Pid(), stop: c.shutdown}, nil
}

// handPool starts the by-hand launcher (this program with -launch).
func handPool(o options, dir, pin string) (*pool, error) {
	addrFile := filepath.Join(dir, "byhand.addr")
	self, _ := os.Executable()
	l, err := benchkit.Start(benchkit.Spec{Log: filepath.Join(dir, "byhand.out")}, pinned(pin, self, "-launch", "-worker", o.worker,
		"-workers", fmt.Sprint(o.workers), "-addr-file", addrFile)...)
	if err != nil {
		return nil, err
	}
	var addr string
	if !benchkit.WaitFor(10*time.Second, 10*time.Millisecond, func() bool {
		b, err := os.ReadFile(addrFile)
		addr = strings.TrimSpace(string(b))
		return err == nil
	}) {
		l.Stop(syscall.SIGTERM, time.Second)
		return nil, fmt.Errorf("the by-hand launcher did not bind (see %s/byhand.out)", dir)
	}
	_, port, _ := strings.Cut(addr, ":")
	return &pool{name: "by hand", url: "http://" + addr + "/", port: port, pid: l.Pid(),
		stop: func() { l.Stop(syscall.SIGTERM, 10*time.Second) }}, nil
}

// cpuTime is the CPU time pid has used itself, 0 when it cannot be read.
func cpuTime(pid int) time.Duration {
	st, _ := benchkit.ReadStat(pid)
	return st.CPU()
}

// connSpread counts the established connections on the pool's port per
// process that holds them (ss -tnp), most first, padded with zeros to n
// workers.
func connSpread(port string, n int) string {
	out, err := exec.Command("ss", "-tnpH", "state", "established", "( sport = :"+port+" )").Output()
	if err != nil {
		return "?"
	}
	perPid := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, "pid="); i >= 0 {
			pid, _, _ := strings.Cut(line[i+4:], ",")
			perPid[pid]++
		}
	}
	var counts []int
	for _, c := range perPid {
		counts = append(counts, c)
	}
	for len(counts) < n {
		counts = append(counts, 0)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(counts)))
	var s []string
	for _, c := range counts {
		s = append(s, strconv.Itoa(c))
	}
	return strings.Join(s, "+")
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
