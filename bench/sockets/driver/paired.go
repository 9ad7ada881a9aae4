package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

// The paired phase: the throughput target measured so that the machine's
// own noise cancels out.
//
// On this kind of machine (a 2-CPU VM on a shared host) one pool measured
// alone moves by 15-30 % from one run to the next, whoever started it: a
// plain CPU loop timed ten times varies as much. Runs one after the other
// cannot resolve the 2 % the target asks about without hundreds of them.
// So here both pools run at the same time, on the same CPU, each loaded
// by its own copy of the balanced client (load.go) over the same window:
// whatever slows the machine slows both, and the ratio of their request
// rates is what remains — how much work a request costs in one pool
// against the other. Were cfkd on the data path, every request in its
// pool would cost that extra work and its pool would answer fewer.
//
// Layout, with n CPUs: the clients on CPU 0, both pools (cfkd or the
// launcher, and their workers) on CPUs 1..n-1, so that the clients do
// not compete with the workers. Every worker is in a session of its own
// in both pools, so the scheduler gives each busy worker the same share.

// pairedSample is one paired run: both pools under load at once.
type pairedSample struct {
	res       [2]loadResult
	parentCPU [2]time.Duration
	clientCPU [2]time.Duration // what each load client used
	otherCPU  float64
}

func (s pairedSample) ratio() float64 { return s.res[0].rps() / s.res[1].rps() }

type pairedResult struct {
	names          [2]string
	samples        [][]pairedSample // per load mode
	served         [2][]int
	loadCPU, pools string // the CPU lists, "" when not pinned
	secs           int
	conns          int
}

// pairedModes are the two load modes of the paired phase.
var pairedModes = []loadMode{
	{"keep-alive, balanced (the same number of connections on every worker)", false},
	{"a new connection per request", true},
}

func paired(o options) (*pairedResult, error) {
	r := &pairedResult{samples: make([][]pairedSample, len(pairedModes)), secs: o.pairedSecs, conns: o.wrkConns}
	if n := runtime.NumCPU(); n >= 2 && o.pin {
		r.loadCPU, r.pools = "0", "1"
		if n > 2 {
			r.pools = fmt.Sprintf("1-%d", n-1)
		}
	}
	err := eachRound(o, o.pairedRounds, "paired", r.pools, true, func(round int, dir string, pools [2]*pool) error {
		if o.control == "relay" {
			// The relay's stop goes into pools[0].stop.
			if err := behindRelay(pools[0], dir, r.pools); err != nil {
				return err
			}
		}
		r.names = [2]string{pools[0].name, pools[1].name}
		return r.round(o, round, pools)
	})
	return r, err
}

func (r *pairedResult) round(o options, round int, pools [2]*pool) error {
	for i, p := range pools {
		n, err := distinctWorkers(p.url, o.workers, 10*time.Second)
		if err != nil {
			return fmt.Errorf("%s pool: %w", p.name, err)
		}
		r.served[i] = append(r.served[i], n)
	}
	// Warm-up, not recorded.
	if _, err := r.run(o, pools, time.Second, false, round%2 == 1); err != nil {
		return err
	}
	for m, mode := range pairedModes {
		s, err := r.run(o, pools, time.Duration(o.pairedSecs)*time.Second, mode.closeConns, round%2 == 1)
		if err != nil {
			return err
		}
		r.samples[m] = append(r.samples[m], s)
		benchkit.Logf("paired round %d, %s: %s %.0f req/s, %s %.0f req/s, ratio %.3f, errors %d/%d, other processes %.0f%% of the machine",
			round+1, mode.name, pools[0].name, s.res[0].rps(), pools[1].name, s.res[1].rps(), s.ratio(),
			s.res[0].Errors+s.res[0].Non2xx, s.res[1].Errors+s.res[1].Non2xx, 100*s.otherCPU)
	}
	return nil
}

// run loads both pools at once for dur, each with its own client.
func (r *pairedResult) run(o options, pools [2]*pool, dur time.Duration, closeConns, reversed bool) (pairedSample, error) {
	var s pairedSample
	var clients [2]*loadClient
	order := []int{0, 1}
	if reversed {
		order = []int{1, 0}
	}
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.kill()
			}
		}
	}()
	for _, i := range order {
		c, err := startLoad(r.loadCPU, pools[i], o.workers, o.wrkConns, dur, closeConns)
		if err != nil {
			return s, fmt.Errorf("%s pool: %w", pools[i].name, err)
		}
		clients[i] = c
	}
	var before [2]time.Duration
	for i, p := range pools {
		before[i] = cpuTime(p.pid)
	}
	others0, t0 := benchkit.OtherCPU(), time.Now()
	for _, i := range order {
		if err := clients[i].start(); err != nil {
			return s, err
		}
	}
	for i, c := range clients {
		res, cpu, err := c.result(dur + 30*time.Second)
		if err != nil {
			return s, fmt.Errorf("%s pool: %w", pools[i].name, err)
		}
		s.res[i], s.clientCPU[i] = res, cpu
	}
	s.otherCPU = benchkit.OtherShare(others0, benchkit.OtherCPU(), time.Since(t0))
	for i, p := range pools {
		s.parentCPU[i] = cpuTime(p.pid) - before[i]
	}
	return s, nil
}

// loadClient is a running -load process.
type loadClient struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr strings.Builder
}

// startLoad starts a balanced client against p and waits until it holds
// its connections.
func startLoad(cpu string, p *pool, workers, conns int, dur time.Duration, closeConns bool) (*loadClient, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	argv := pinned(cpu, self, "-load", "-addr", p.addr(), "-workers", fmt.Sprint(workers),
		"-conns", fmt.Sprint(conns), "-load-secs", fmt.Sprint(dur.Seconds()))
	if closeConns {
		argv = append(argv, "-close")
	}
	c := &loadClient{cmd: exec.Command(argv[0], argv[1:]...)}
	c.cmd.Env = benchkit.CleanEnv()
	c.cmd.Stderr = &c.stderr
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.stdout = bufio.NewReader(out)
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the load client: %w", err)
	}
	line, err := c.stdout.ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		c.kill()
		return nil, fmt.Errorf("load client: %q, %v: %s", line, err, strings.TrimSpace(c.stderr.String()))
	}
	return c, nil
}

// start tells the client to begin its window.
func (c *loadClient) start() error {
	_, err := io.WriteString(c.stdin, "go\n")
	return err
}

// result waits up to timeout for the client's report, and says how much
// CPU the client used.
func (c *loadClient) result(timeout time.Duration) (loadResult, time.Duration, error) {
	var res loadResult
	decoded := make(chan error, 1)
	go func() { decoded <- json.NewDecoder(c.stdout).Decode(&res) }()
	var err error
	select {
	case err = <-decoded:
	case <-time.After(timeout):
		c.kill() // unblocks the decoder
		return res, 0, fmt.Errorf("load client: no report after %v: %s", timeout, strings.TrimSpace(c.stderr.String()))
	}
	werr := c.cmd.Wait()
	cpu := c.cmd.ProcessState.UserTime() + c.cmd.ProcessState.SystemTime()
	c.cmd = nil
	if err != nil || werr != nil {
		return res, cpu, fmt.Errorf("load client: %v, %v: %s", err, werr, strings.TrimSpace(c.stderr.String()))
	}
	return res, cpu, nil
}

func (c *loadClient) kill() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	}
}

// addr is the pool's host:port.
func (p *pool) addr() string {
	return strings.TrimSuffix(strings.TrimPrefix(p.url, "http://"), "/")
}
