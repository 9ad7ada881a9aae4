package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

// supervisorPids returns root and every descendant of root that is not a
// service: the processes whose cost is the supervisor's. For runit that is
// runsvdir and its runsv children, for s6 s6-svscan and its s6-supervise
// children, for cfkd and supervisord the daemon alone (plus any helper it
// keeps). A process is a service when its pid is in services or its
// executable is the marker; service descendants are skipped too.
func supervisorPids(root int, services map[int]bool, markerExe string) []int {
	stats := benchkit.AllStats()
	children := map[int][]int{}
	for pid, st := range stats {
		children[st.PPID] = append(children[st.PPID], pid)
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if pid != root && (services[pid] || exeIs(pid, markerExe)) {
			continue
		}
		if st, ok := stats[pid]; !ok || st.State == 'Z' {
			continue
		}
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	return out
}

// exeIs tells whether /proc/PID/exe is the file at path.
func exeIs(pid int, path string) bool {
	l := benchkit.ExeOf(pid)
	return l != "" && filepath.Clean(l) == path
}

// statusNumber returns the number in a "Name:   N [kB]" line of a /proc file
// such as status or smaps_rollup.
func statusNumber(path, field string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, field+":") {
			fs := strings.Fields(line[len(field)+1:])
			if len(fs) == 0 {
				break
			}
			return strconv.ParseInt(fs[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, field)
}

// memory is the summed resident size of a set of processes.
type memory struct {
	procs  int
	rssKB  int64 // VmRSS: pages shared between the processes count once per process
	pssKB  int64 // Pss: shared pages divided among their sharers
	failed int   // processes that vanished while being read
}

func measureMemory(pids []int) memory {
	var m memory
	for _, pid := range pids {
		rss, err := statusNumber(fmt.Sprintf("/proc/%d/status", pid), "VmRSS")
		if err != nil {
			m.failed++
			continue
		}
		m.procs++
		m.rssKB += rss
		if pss, err := statusNumber(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss"); err == nil {
			m.pssKB += pss
		}
	}
	return m
}

// cpuSample is the CPU spent so far by a set of processes.
type cpuSample struct {
	ticks    uint64 // utime+stime from /proc/PID/stat, all threads
	schedNs  uint64 // time on CPU from /proc/PID/task/*/schedstat, ns resolution
	switches uint64 // voluntary+involuntary context switches of all threads: wakeups
	missing  int
}

func sampleCPU(pids []int) cpuSample {
	var s cpuSample
	for _, pid := range pids {
		st, err := benchkit.ReadStat(pid)
		if err != nil {
			s.missing++
			continue
		}
		s.ticks += st.Utime + st.Stime
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, t := range tasks {
			dir := fmt.Sprintf("/proc/%d/task/%s", pid, t.Name())
			if b, err := os.ReadFile(dir + "/schedstat"); err == nil {
				if fs := strings.Fields(string(b)); len(fs) > 0 {
					ns, _ := strconv.ParseUint(fs[0], 10, 64)
					s.schedNs += ns
				}
			}
			for _, field := range []string{"voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"} {
				if n, err := statusNumber(dir+"/status", field); err == nil {
					s.switches += uint64(n)
				}
			}
		}
	}
	return s
}

// machineBusyTicks is the CPU time, in clock ticks, all CPUs have spent
// doing anything but idling or waiting for I/O since boot (from the "cpu"
// line of /proc/stat). The difference over a window shows whether
// something else on the machine disturbed a measurement.
func machineBusyTicks() uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy uint64
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		// user nice system idle iowait irq softirq steal guest guest_nice;
		// guest time is already counted in user; steal is time this VM
		// did not run at all.
		if i == 3 || i == 4 || i >= 7 {
			continue
		}
		busy += n
	}
	return busy
}

// loadAvg is the first field of /proc/loadavg.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// niceness is the nice value of the driver (field 19 of /proc/self/stat),
// which everything it launches inherits.
func niceness() string {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return "?"
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 17 {
		return "?"
	}
	return f[16]
}

// ownCPU is the CPU time used so far by the driver and by every descendant
// that has been reaped (each parent's wait adds its children's time to its
// own children's time): the supervisors, their services, the CLIs.
func ownCPU() time.Duration {
	var self, kids syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}
