package supervisor

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Memory is what a process group uses, in KiB, from the kernel's
// /proc/PID/smaps_rollup: RSS counts shared pages in full in every
// process, PSS splits each shared page between the processes that map it
// (so PSS adds up across a pool), Private is what only this process has.
type Memory struct {
	RSS, PSS, Private uint64
	Procs             int
}

func (m *Memory) add(o Memory) {
	m.RSS += o.RSS
	m.PSS += o.PSS
	m.Private += o.Private
	m.Procs += o.Procs
}

// memTarget is one line of `command mem`: a service or a proxy, its pid,
// and the process group whose memory counts for it (0: the pid alone).
type memTarget struct {
	kind, name string
	pid, pgid  int
}

// cmdMem answers `command mem [SELECTOR]`: per service, and per proxy of
// the selected services, `kind name pid rss pss private procs` (KiB), tab
// separated. It reads /proc off the loop, so a large pool does not stall
// it.
func (s *Supervisor) cmdMem(args []string, done func([]string, error)) {
	if len(args) == 0 {
		args = []string{"all"}
	}
	svcs, err := s.selectServices(args)
	if err != nil {
		done(nil, err)
		return
	}
	var targets []memTarget
	seenProxy := map[string]bool{}
	for _, svc := range svcs {
		targets = append(targets, memTarget{"service", svc.name, svc.pid, svc.pgid})
		if p := s.proxies[svc.proxy]; p != nil && p.up() && !seenProxy[p.name] {
			seenProxy[p.name] = true
			// A proxy's group is itself: its workers lead their own.
			targets = append(targets, memTarget{"proxy", p.name, p.pid, 0})
		}
	}
	go func() { done(memLines(targets), nil) }()
}

func memLines(targets []memTarget) []string {
	groups := processGroups()
	out := make([]string, 0, len(targets))
	for _, t := range targets {
		var m Memory
		switch {
		case t.pid == 0:
		case t.pgid != 0 && len(groups[t.pgid]) > 0:
			for _, pid := range groups[t.pgid] {
				m.add(readMemory(pid))
			}
		default:
			m = readMemory(t.pid)
		}
		out = append(out, strings.Join([]string{t.kind, t.name, itoa0(t.pid),
			strconv.FormatUint(m.RSS, 10), strconv.FormatUint(m.PSS, 10),
			strconv.FormatUint(m.Private, 10), strconv.Itoa(m.Procs)}, "\t"))
	}
	return out
}

// processGroups maps each process group to its members, from /proc.
func processGroups() map[int][]int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	groups := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after "(comm)": state ppid pgrp ...
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 {
			continue
		}
		pgid, _ := strconv.Atoi(f[2])
		groups[pgid] = append(groups[pgid], pid)
	}
	return groups
}

// readMemory reads one process's smaps_rollup; a process that is gone
// counts as nothing.
func readMemory(pid int) Memory {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return Memory{}
	}
	defer f.Close()
	m := Memory{Procs: 1}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseUint(fields[0], 10, 64)
		switch k {
		case "Rss":
			m.RSS = n
		case "Pss":
			m.PSS = n
		case "Private_Clean", "Private_Dirty":
			m.Private += n
		}
	}
	return m
}
