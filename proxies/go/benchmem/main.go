// Command benchmem measures the memory of a pool of example workers that
// share one table through the Go proxy, against independent processes
// that each build the table in their own heap.
//
//	go run ./proxies/go/benchmem                       # 16 workers, 200 MiB
//	go run ./proxies/go/benchmem -workers 4 -mb 64 -modes proxy
//
// Modes:
//
//	single       the proxy and one worker: the reference footprint
//	proxy        the proxy and -workers workers on one socket
//	independent  -workers `example -standalone` processes on one socket
//
// For each mode it starts the pool and waits until every process serves
// (the time is reported), then sums PSS over the pool, proxy included, at
// three points: idle; after runtime.GC and debug.FreeOSMemory in every
// process (SIGUSR1); after every process has read the whole table once
// (SIGUSR2). A few lookups over HTTP check the answers on the way.
package main

import (
	"bufio"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/controlfreak-go/cfk/internal/fakecfkd"
	"github.com/controlfreak-go/cfk/proxies/go/example/table"
)

// stepWait bounds each wait for the pool (a start, a GC, a read pass).
const stepWait = 5 * time.Minute

func main() {
	workers := flag.Int("workers", 16, "workers in the pool")
	mb := flag.Int("mb", 200, "table size in MiB")
	modes := flag.String("modes", "single,proxy,independent", "modes to run, in order")
	example := flag.String("example", "", "the example binary (default: go build it)")
	flag.Parse()

	bin := *example
	if bin == "" {
		dir, err := os.MkdirTemp("", "benchmem")
		check(err)
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "example")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/controlfreak-go/cfk/proxies/go/example").CombinedOutput()
		if err != nil {
			fail("go build example: %v\n%s", err, out)
		}
	}
	records := uint64(*mb) << 20 / table.RecordBytes

	var results []*result
	for _, mode := range strings.Split(*modes, ",") {
		var r *result
		switch mode {
		case "single":
			r = runProxy(bin, records, 1)
		case "proxy":
			r = runProxy(bin, records, *workers)
		case "independent":
			r = runIndependent(bin, records, *workers)
		default:
			fail("unknown mode %q", mode)
		}
		r.mode = mode
		results = append(results, r)
		r.print(os.Stdout)
	}
	summary(os.Stdout, results)
}

// pool is what the steps need of a running pool.
type pool struct {
	pids    []int // the workers (or independent processes)
	proxy   int   // 0 for independent processes
	addr    string
	waitOut func(what string, n int) // waits for n stdout lines starting with what, one per worker
}

// result is one mode's measurements.
type result struct {
	mode     string
	workers  int
	preload  time.Duration // proxy modes: until the table is in the memfd
	start    time.Duration // from the first start to every worker serving
	startOne []time.Duration
	steps    []step
	tableKB  int
}

// step is the pool's memory at one point.
type step struct {
	name                 string
	pss, rss, memfdPss   int // kB, summed over the pool
	proxyPss             int
	workerMin, workerMax int
	pageTables           int // kB, not in PSS
	workerAnon           int // kB, summed over the workers: their private runtime and heap
	memfdRss             int
}

func runProxy(bin string, records uint64, n int) *result {
	r := &result{workers: n, tableKB: int(records * table.RecordBytes >> 10)}
	t0 := time.Now()
	p, err := fakecfkd.Start(fakecfkd.Options{
		Path:    bin,
		Args:    []string{"-records", strconv.FormatUint(records, 10)},
		Sockets: []string{"web"},
		Home:    os.TempDir(),
		Stdout:  os.Stderr,
	})
	check(err)
	defer p.Close()
	_, err = p.WaitLogPrefix(stepWait, "out:-:preloaded ")
	check(err)
	r.preload = time.Since(t0)

	t1 := time.Now()
	var pids []int
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("lookup%03d", i+1)
		check(p.Send(map[string]any{"command": "start", "name": names[i], "cmd": "lookup", "sockets": []string{"web"}}))
	}
	for _, name := range names {
		st, err := p.WaitStatus(stepWait, 0, func(s fakecfkd.Status) bool { return s.Name == name && s.Status == "started" })
		check(err)
		pids = append(pids, st.Pid)
	}
	for _, name := range names {
		_, err := p.WaitLogPrefix(stepWait, "out:"+name+":serving ")
		check(err)
	}
	r.start = time.Since(t1)

	// One at a time, for the latency of a single start.
	for i := range 5 {
		name := fmt.Sprintf("probe%d", i)
		t := time.Now()
		check(p.Send(map[string]any{"command": "start", "name": name, "cmd": "lookup", "sockets": []string{"web"}}))
		_, err := p.WaitLogPrefix(stepWait, "out:"+name+":serving ")
		check(err)
		r.startOne = append(r.startOne, time.Since(t))
		check(p.Send(map[string]any{"command": "stop", "name": name}))
		_, err = p.WaitStatus(stepWait, 0, func(s fakecfkd.Status) bool { return s.Name == name && s.Status == "stopped" })
		check(err)
	}

	pl := &pool{pids: pids, proxy: p.Cmd.Process.Pid, addr: p.Sockets["web"].Addr}
	pl.waitOut = func(what string, n int) {
		for _, name := range names {
			_, err := p.WaitLog(stepWait, func(l string) bool {
				return strings.HasPrefix(l, "out:"+name+":"+what)
			})
			check(err)
		}
	}
	measureSteps(r, pl)
	return r
}

func runIndependent(bin string, records uint64, n int) *result {
	r := &result{workers: n, tableKB: int(records * table.RecordBytes >> 10)}
	sock, err := fakecfkd.Listen("web")
	check(err)
	defer sock.File.Close()

	var mu sync.Mutex
	lines := map[int][]string{} // by process index
	var cmds []*exec.Cmd
	t0 := time.Now()
	for i := range n {
		cmd := exec.Command(bin, "-standalone", "-records", strconv.FormatUint(records, 10))
		cmd.ExtraFiles = []*os.File{sock.File}
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		check(err)
		check(cmd.Start())
		cmds = append(cmds, cmd)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				mu.Lock()
				lines[i] = append(lines[i], sc.Text())
				mu.Unlock()
			}
		}()
	}
	defer func() {
		for _, c := range cmds {
			c.Process.Signal(syscall.SIGTERM)
		}
		for _, c := range cmds {
			c.Wait()
		}
	}()
	waitOut := func(what string) {
		deadline := time.Now().Add(stepWait)
		for {
			ok := 0
			mu.Lock()
			for i := range n {
				for _, l := range lines[i] {
					if strings.HasPrefix(l, what) {
						ok++
						break
					}
				}
			}
			mu.Unlock()
			if ok == n {
				return
			}
			if time.Now().After(deadline) {
				fail("independent processes: %d of %d said %q", ok, n, what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitOut("serving ")
	r.start = time.Since(t0)
	pl := &pool{addr: sock.Addr, waitOut: func(what string, _ int) { waitOut(what) }}
	for _, c := range cmds {
		pl.pids = append(pl.pids, c.Process.Pid)
	}
	measureSteps(r, pl)
	return r
}

// measureSteps checks a few answers, then measures idle, after GC, after
// a read pass.
func measureSteps(r *result, pl *pool) {
	checkLookups(pl.addr, uint64(r.tableKB)<<10/table.RecordBytes)
	r.steps = append(r.steps, measure("idle", pl))
	signalAll(pl.pids, syscall.SIGUSR1)
	pl.waitOut("freed memory", len(pl.pids))
	r.steps = append(r.steps, measure("after GC", pl))
	signalAll(pl.pids, syscall.SIGUSR2)
	pl.waitOut("read ", len(pl.pids))
	r.steps = append(r.steps, measure("after read", pl))
}

func signalAll(pids []int, sig syscall.Signal) {
	for _, pid := range pids {
		check(syscall.Kill(pid, sig))
	}
}

// checkLookups asks for a few keys and checks the values.
func checkLookups(addr string, records uint64) {
	client := http.Client{Timeout: time.Minute}
	for _, i := range []uint64{0, records / 3, records - 1} {
		k := table.Key(i)
		resp, err := client.Get(fmt.Sprintf("http://%s/lookup?key=%d", addr, k))
		check(err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		v := table.Value(k)
		if want := fmt.Sprintf("%d %s\n", k, hex.EncodeToString(v[:])); string(b) != want {
			fail("lookup %d: %q, want %q", k, b, want)
		}
	}
}

// measure sums the pool's memory from /proc.
func measure(name string, pl *pool) step {
	s := step{name: name, workerMin: 1 << 62}
	all := append([]int(nil), pl.pids...)
	if pl.proxy != 0 {
		all = append(all, pl.proxy)
	}
	for _, pid := range all {
		m := readSmaps(pid)
		s.pss += m.pss
		s.rss += m.rss
		s.memfdPss += m.memfdPss
		s.memfdRss = max(s.memfdRss, m.memfdRss)
		s.pageTables += statusKB(pid, "VmPTE:")
		if pid == pl.proxy {
			s.proxyPss = m.pss
			continue
		}
		s.workerAnon += m.anonPss
		s.workerMin = min(s.workerMin, m.pss)
		s.workerMax = max(s.workerMax, m.pss)
	}
	return s
}

type smaps struct{ pss, rss, memfdPss, memfdRss, anonPss int }

// readSmaps sums Pss and Rss over a process's mappings, and separately
// over its mapping of the proxy's memfd.
func readSmaps(pid int) smaps {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	check(err)
	defer f.Close()
	var m smaps
	inMemfd, inAnon := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		fields := strings.Fields(l)
		if len(fields) == 0 {
			continue
		}
		if strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			inMemfd = strings.Contains(l, "/memfd:cfkproxy")
			// Anonymous memory (Go's heap, stacks, runtime structures) has
			// no path; [heap] and [stack] are the libc ones.
			inAnon = len(fields) < 6 || fields[5] == "[heap]" || fields[5] == "[stack]"
			continue
		}
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.Atoi(fields[1])
		switch fields[0] {
		case "Pss:":
			m.pss += v
			if inMemfd {
				m.memfdPss += v
			}
			if inAnon {
				m.anonPss += v
			}
		case "Rss:":
			m.rss += v
			if inMemfd {
				m.memfdRss += v
			}
		}
	}
	return m
}

func statusKB(pid int, key string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	check(err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

func mib(kb int) string { return fmt.Sprintf("%.1f", float64(kb)/1024) }

func (r *result) print(w io.Writer) {
	fmt.Fprintf(w, "\n## %s: %d worker(s), table %s MiB\n\n", r.mode, r.workers, mib(r.tableKB))
	if r.preload > 0 {
		fmt.Fprintf(w, "preload %v; ", r.preload.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "all %d serving %v after the first start", r.workers, r.start.Round(time.Millisecond))
	if len(r.startOne) > 0 {
		d := append([]time.Duration(nil), r.startOne...)
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		fmt.Fprintf(w, "; one worker, start command to serving: median %v (of %d)", d[len(d)/2].Round(100*time.Microsecond), len(d))
	}
	fmt.Fprintf(w, "\n\n| step | PSS MiB | of which table | RSS MiB | proxy PSS | worker PSS min-max | worker anon avg | page tables MiB |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.steps {
		proxy := "-"
		if s.proxyPss > 0 {
			proxy = mib(s.proxyPss)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s-%s | %s | %s |\n", s.name, mib(s.pss), mib(s.memfdPss), mib(s.rss), proxy,
			mib(s.workerMin), mib(s.workerMax), mib(s.workerAnon/r.workers), mib(s.pageTables))
	}
}

// summary compares each pool with one worker alone (single, after its
// read pass: the table plus one worker's own memory).
func summary(w io.Writer, results []*result) {
	var ref *result
	for _, r := range results {
		if r.mode == "single" {
			ref = r
		}
	}
	fmt.Fprintf(w, "\n## Summary\n\n| pool | start | idle PSS MiB | after GC | after read | after read / one worker |\n|---|---|---|---|---|---|\n")
	for _, r := range results {
		ratio := "-"
		if ref != nil {
			one := ref.steps[2].workerMax
			ratio = fmt.Sprintf("%.3f", float64(r.steps[2].pss)/float64(one))
		}
		start := r.start.Round(time.Millisecond).String()
		if r.preload > 0 {
			start = fmt.Sprintf("%v + %v", r.preload.Round(time.Millisecond), start)
		}
		fmt.Fprintf(w, "| %s x%d | %s | %s | %s | %s | %s |\n", r.mode, r.workers, start,
			mib(r.steps[0].pss), mib(r.steps[1].pss), mib(r.steps[2].pss), ratio)
	}
	if ref != nil {
		fmt.Fprintf(w, "\none worker alone after its read pass: %s MiB PSS (table %s MiB); the ratio's numerator includes the proxy\n",
			mib(ref.steps[2].workerMax), mib(ref.tableKB))
	}
}

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchmem: "+format+"\n", args...)
	os.Exit(1)
}
