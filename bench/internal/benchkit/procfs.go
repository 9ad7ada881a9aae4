package benchkit

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// ClockTicksPerSec is USER_HZ, the unit of the times in /proc/PID/stat.
// It is 100 on every Linux architecture Go runs on.
const ClockTicksPerSec = 100

// Stat is what the drivers read of one /proc/PID/stat line.
type Stat struct {
	PID, PPID      int
	Comm           string
	State          byte   // R, S, D, Z ...
	Utime, Stime   uint64 // clock ticks, summed over all threads
	CUtime, CStime uint64 // clock ticks of the children it has reaped
}

// CPU is the user and system time the process has used itself.
func (s Stat) CPU() time.Duration {
	return time.Duration(s.Utime+s.Stime) * time.Second / ClockTicksPerSec
}

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	return parseStat(pid, b)
}

// parseStat reads a stat line. The comm field is in parentheses and may
// itself hold spaces or parentheses, so the fields after it are counted
// from the last ')'.
func parseStat(pid int, b []byte) (Stat, error) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return Stat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	st := Stat{PID: pid, Comm: string(b[open+1 : closing])}
	f := strings.Fields(string(b[closing+1:]))
	// f[0] is field 3 (state); field N is f[N-3].
	if len(f) < 15 {
		return Stat{}, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	st.State = f[0][0]
	st.PPID, _ = strconv.Atoi(f[1])
	st.Utime, _ = strconv.ParseUint(f[11], 10, 64)
	st.Stime, _ = strconv.ParseUint(f[12], 10, 64)
	st.CUtime, _ = strconv.ParseUint(f[13], 10, 64)
	st.CStime, _ = strconv.ParseUint(f[14], 10, 64)
	return st, nil
}

// AllStats reads the stat line of every process on the machine; one that
// exits meanwhile is left out.
func AllStats() map[int]Stat {
	ents, _ := os.ReadDir("/proc")
	m := make(map[int]Stat, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := ReadStat(pid); err == nil {
			m[pid] = st
		}
	}
	return m
}

// Alive tells whether pid is a process that has not exited: a zombie
// (exited, its parent's wait pending) serves nothing and counts as gone.
func Alive(pid int) bool {
	st, err := ReadStat(pid)
	return err == nil && st.State != 'Z' && st.State != 'X'
}

// ExeOf is the executable of pid (/proc/PID/exe, symlinks resolved), or
// "" when it cannot be read.
func ExeOf(pid int) string {
	s, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return s
}

// OtherCPU is the CPU time used so far by the user-space processes that
// are not the benchmark's (neither the driver nor any process below it),
// counting for each its own time and that of the children it reaped: a
// process that exits within a window then still counts, in its reaper's
// sum. Kernel threads are left out. The difference of two readings is
// what the rest of the machine took while a measurement ran. It is an
// estimate: a process that exits while /proc is being read may be
// counted twice or not at all, which matters only when other processes
// fork and exit by the hundred (see OtherShare).
func OtherCPU() time.Duration {
	self := os.Getpid()
	procs := AllStats()
	var ticks uint64
	for pid, st := range procs {
		if pid == 2 || st.PPID == 2 { // kthreadd and the kernel threads
			continue
		}
		ours := false
		for p, hops := pid, 0; p > 1 && hops < 64; hops++ {
			if p == self {
				ours = true
				break
			}
			next, ok := procs[p]
			if !ok {
				break
			}
			p = next.PPID
		}
		if !ours {
			ticks += st.Utime + st.Stime + st.CUtime + st.CStime
		}
	}
	return time.Duration(ticks) * time.Second / ClockTicksPerSec
}

// OtherShare turns two OtherCPU readings taken elapsed apart into a share
// of the machine's CPUs, clamped to 0..1 (a snapshot of /proc is not
// atomic, so a busy machine can read a little outside).
func OtherShare(before, after, elapsed time.Duration) float64 {
	share := float64(after-before) / (float64(elapsed) * float64(runtime.NumCPU()))
	return max(0, min(1, share))
}
