package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

// A respawn variant is one service of the respawn measurement: the same
// marker program, handed a socket in a different way or none.
type variant struct {
	service string
	label   string
	extra   string // the service line that makes the difference, or ""
	listen  byte   // the marker's third field when all went right
	stdin   byte   // the marker's fourth field when all went right
}

var variants = []variant{
	{"rs_plain", "no socket", "", '0', '0'},
	{"rs_stdin", "`tie_stdin_to=web`", "tie_stdin_to=web", '0', '1'},
	{"rs_sockets", "`sockets=web` (/bin/sh exec step)", "sockets=web", '1', '0'},
}

type respawnResult struct {
	latencies [][]float64 // ms, per variant
	bad       []int       // markers whose socket fields were wrong, per variant
	backoffs  int         // cfkd log lines about a retry after a failed start
	minAge    time.Duration
}

// markerLog follows one service's marker file.
type markerLog struct {
	path string
	off  int64
}

type mark struct {
	ns     int64
	pid    int
	listen byte
	stdin  byte
}

// next returns the marker lines appended since the last call.
func (m *markerLog) next() []mark {
	f, err := os.Open(m.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(m.off, 0); err != nil {
		return nil
	}
	var out []mark
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			break // a partial line is read again next time
		}
		m.off += int64(len(line))
		f := strings.Fields(string(line))
		if len(f) != 4 {
			continue
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		pid, _ := strconv.Atoi(f[1])
		out = append(out, mark{ns: ns, pid: pid, listen: f[2][0], stdin: f[3][0]})
	}
	return out
}

// respawn kills each variant's service o.kills times, round robin, and
// times the new process's first instruction against the kill.
func respawn(o options) (*respawnResult, error) {
	dir := filepath.Join(o.work, "respawn")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c, err := startCfkd(o.cfkd, filepath.Join(dir, "cfkd"), "")
	if err != nil {
		return nil, err
	}
	defer c.shutdown()
	lines := []string{"socket web host=127.0.0.1", "socket web service=0", "command bind web"}
	logs := make([]*markerLog, len(variants))
	for i, v := range variants {
		logs[i] = &markerLog{path: filepath.Join(dir, v.service+".markers")}
		cmd, _ := json.Marshal([]string{o.marker, logs[i].path})
		lines = append(lines,
			fmt.Sprintf("service %s cmd=%s", v.service, cmd),
			fmt.Sprintf("service %s ignore_stdout=1", v.service),
			fmt.Sprintf("service %s ignore_stderr=1", v.service),
			// A service that dies before startwait_secs is a failed start
			// (backoff); 50 ms makes it `running` well before each kill.
			fmt.Sprintf("service %s startwait_secs=0.05", v.service))
		if v.extra != "" {
			lines = append(lines, fmt.Sprintf("service %s %s", v.service, v.extra))
		}
	}
	lines = append(lines, "command start all")
	if _, err := c.do(lines...); err != nil {
		return nil, err
	}

	r := &respawnResult{latencies: make([][]float64, len(variants)), bad: make([]int, len(variants)), minAge: o.minAge}
	current := make([]mark, len(variants))
	for i, l := range logs {
		var ms []mark
		if !benchkit.WaitFor(5*time.Second, time.Millisecond, func() bool { ms = append(ms, l.next()...); return len(ms) > 0 }) {
			return nil, fmt.Errorf("%s never started (see %s)", variants[i].service, dir)
		}
		current[i] = ms[len(ms)-1]
		if current[i].listen != variants[i].listen || current[i].stdin != variants[i].stdin {
			r.bad[i]++
		}
	}
	for k := 0; k < o.kills; k++ {
		for j := range variants {
			i := (j + k) % len(variants) // rotate which variant goes first
			v := variants[i]
			// Kill only a service that is `running` and old enough.
			age := time.Duration(time.Now().UnixNano() - current[i].ns)
			if age < o.minAge {
				time.Sleep(o.minAge - age)
			}
			if !benchkit.WaitFor(5*time.Second, time.Millisecond, func() bool { return c.state(v.service) == "running" }) {
				return nil, fmt.Errorf("%s is not running but %s", v.service, c.state(v.service))
			}
			t0 := time.Now().UnixNano()
			if err := syscall.Kill(current[i].pid, syscall.SIGKILL); err != nil {
				return nil, fmt.Errorf("kill %s pid %d: %w", v.service, current[i].pid, err)
			}
			var fresh []mark
			if !benchkit.WaitFor(5*time.Second, 200*time.Microsecond, func() bool {
				fresh = append(fresh, logs[i].next()...)
				return len(fresh) > 0
			}) {
				return nil, fmt.Errorf("%s did not come back within 5 s after SIGKILL", v.service)
			}
			m := fresh[len(fresh)-1]
			if m.pid == current[i].pid {
				return nil, fmt.Errorf("%s: a marker line from the killed pid %d", v.service, m.pid)
			}
			if m.listen != v.listen || m.stdin != v.stdin {
				r.bad[i]++
			}
			r.latencies[i] = append(r.latencies[i], float64(m.ns-t0)/1e6)
			current[i] = m
		}
	}
	// A kill that found the service still starting would have sent it to
	// backoff; count cfkd's retry lines to prove none did.
	if b, err := os.ReadFile(filepath.Join(dir, "cfkd", "cfkd.log")); err == nil {
		r.backoffs = bytes.Count(b, []byte("[attempt:"))
	}
	return r, nil
}
