package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// --json output: the same rows as the tables, for scripts. Field names are
// snake_case; a field that has no value (no pid, never stopped, no proxy)
// is left out rather than given as an empty string or a zero.

// printJSON writes v indented, with a final newline.
func printJSON(w io.Writer, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintln(w, string(b))
}

// statusJSON is one service of `status --json`.
type statusJSON struct {
	Name       string     `json:"name"`
	State      string     `json:"state"`
	Pid        int        `json:"pid,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	StoppedAt  *time.Time `json:"stopped_at,omitempty"`
	Proxy      string     `json:"proxy,omitempty"`
	ProxyDown  bool       `json:"proxy_down,omitempty"`
	FailReason string     `json:"fail_reason,omitempty"`
	Cmd        string     `json:"cmd,omitempty"`
	Status     string     `json:"status,omitempty"` // what it said with STATUS=
}

func (st serviceStatus) json() statusJSON {
	j := statusJSON{Name: st.Name, State: st.State, Proxy: st.Proxy, ProxyDown: st.ProxyDown,
		FailReason: st.FailReason, Cmd: st.RunningCmd, Status: st.Notify}
	j.Pid, _ = strconv.Atoi(st.Pid)
	if !st.Start.IsZero() {
		t := st.Start.UTC()
		j.StartedAt = &t
	}
	if !st.Stop.IsZero() {
		t := st.Stop.UTC()
		j.StoppedAt = &t
	}
	return j
}

// socketJSON is one socket of `sockets --json`.
type socketJSON struct {
	Name     string   `json:"name"`
	Address  string   `json:"address"`
	State    string   `json:"state"`
	Fd       int      `json:"fd,omitempty"`
	Services []string `json:"services"`
	// The accept queue now and its limit; absent when unknown (not bound).
	Queue      *int `json:"queue,omitempty"`
	QueueLimit *int `json:"queue_limit,omitempty"`
}

func (r socketRow) json() socketJSON {
	j := socketJSON{Name: r.name, Address: r.addr, State: r.state, Services: commaList(r.services)}
	j.Fd, _ = strconv.Atoi(r.fd)
	if n, err := strconv.Atoi(r.queued); err == nil {
		j.Queue = &n
	}
	if n, err := strconv.Atoi(r.limit); err == nil {
		j.QueueLimit = &n
	}
	return j
}

// pidsJSON is one service of `pids --json`.
type pidsJSON struct {
	Name     string `json:"name"`
	Pid      int    `json:"pid,omitempty"`
	ProxyPid int    `json:"proxy_pid,omitempty"`
}

// descJSON is one service of `desc --json`.
type descJSON struct {
	Name   string   `json:"name"`
	Tags   []string `json:"tags"`
	Desc   string   `json:"desc,omitempty"`
	Proxy  string   `json:"proxy,omitempty"`
	Cmd    string   `json:"cmd,omitempty"`
	Status string   `json:"status,omitempty"`
}

func parseDesc(line string) descJSON {
	f := tabFields(line, descFields)
	return descJSON{Name: f[0], Tags: commaList(f[1]), Desc: f[2], Proxy: f[3], Cmd: f[4], Status: f[5]}
}

// proxyJSON is one proxy of `proxystatus --json`.
type proxyJSON struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Pid    int    `json:"pid,omitempty"`
}

func parseProxyStatus(line string) proxyJSON {
	f := tabFields(line, 3)
	j := proxyJSON{Name: f[0], Status: f[1]}
	j.Pid, _ = strconv.Atoi(strings.TrimSpace(f[2]))
	return j
}
