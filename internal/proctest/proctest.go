// Package proctest reads what /proc says about a process, for the tests
// that check the process tree, sessions and fds their programs set up:
// real processes, checked where the kernel keeps the facts.
package proctest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Stat is what /proc/PID/stat says about a process.
type Stat struct {
	State   string // "R", "S", "Z", ...
	Parent  int
	Group   int
	Session int
}

// ReadStat reads /proc/PID/stat; a process that is gone fails the test.
func ReadStat(t testing.TB, pid int) Stat {
	t.Helper()
	st, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func readStat(pid int) (Stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	// The command name, in parentheses, may hold spaces and parentheses
	// itself: the fields are counted from the last ")".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	f := strings.Fields(s[i+1:]) // state ppid pgrp session ...
	if len(f) < 4 {
		return Stat{}, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	st := Stat{State: f[0]}
	for i, n := range []*int{&st.Parent, &st.Group, &st.Session} {
		if *n, err = strconv.Atoi(f[1+i]); err != nil {
			return Stat{}, fmt.Errorf("/proc/%d/stat: %v", pid, err)
		}
	}
	return st, nil
}

// Alive says whether pid is a live process: not gone, not a zombie.
func Alive(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.State != "Z"
}

// Cmdline is /proc/PID/cmdline with its NULs as spaces, trimmed; "" when
// the process is gone.
func Cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// Comm is /proc/PID/comm, the name ps and top show; "" when the process
// is gone.
func Comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSuffix(string(b), "\n")
}

// Fds maps each open fd of pid to what it points at ("pipe:[N]",
// "socket:[N]", "/dev/null", ...).
func Fds(t testing.TB, pid int) map[int]string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fds := map[int]string{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			t.Fatalf("%s/%s: %v", dir, e.Name(), err)
		}
		fds[n], _ = os.Readlink(dir + "/" + e.Name()) // gone since ReadDir: ""
	}
	return fds
}

// FdFlags is the file status flags of fd in pid (O_NONBLOCK, O_CLOEXEC,
// ...), from the octal flags line of /proc/PID/fdinfo/FD.
func FdFlags(t testing.TB, pid, fd int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			flags, err := strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			if err != nil {
				t.Fatalf("fdinfo %d of %d: flags %q: %v", fd, pid, v, err)
			}
			return int(flags)
		}
	}
	t.Fatalf("no flags in fdinfo %d of %d", fd, pid)
	return 0
}

// Children lists pid's children, zombies included; none when pid is gone.
func Children(pid int) []int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var kids []int
	for _, f := range strings.Fields(string(b)) {
		n, _ := strconv.Atoi(f)
		kids = append(kids, n)
	}
	return kids
}

// Target is what /proc/PID/fd/N shows for f ("socket:[N]", "pipe:[N]", a
// path) in this process, and so in any process f is handed to.
func Target(t testing.TB, f *os.File) string {
	t.Helper()
	target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return target
}
