package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// The environment variables that tell a proxy its pipes and sockets.
const (
	EnvCommandFd  = "_CFK_COMMAND_FD"
	EnvStatusFd   = "_CFK_STATUS_FD"
	EnvLogFd      = "_CFK_LOG_FD"
	EnvSockPrefix = "_CFK_SOCK_"
)

// StartCommand asks a proxy to start a service. Field names and types are
// the original's: a proxy written for ControlFreak 1.0 reads it as is, and
// ignores Sockets, which is ours.
type StartCommand struct {
	Name         string            `json:"name"`
	Cmd          any               `json:"cmd"` // a string, or an array of strings
	Env          map[string]string `json:"env"`
	TieStdinTo   *string           `json:"tie_stdin_to"`
	IgnoreStdout int               `json:"ignore_stdout"`
	IgnoreStderr int               `json:"ignore_stderr"`
	NoNewSession int               `json:"no_new_session"`
	Sockets      []string          `json:"sockets,omitempty"`
}

// EncodeStart renders a start command as one line, newline included.
func EncodeStart(c StartCommand) []byte {
	if c.Env == nil {
		c.Env = map[string]string{}
	}
	type wire struct {
		Command string `json:"command"`
		StartCommand
	}
	b, _ := json.Marshal(wire{"start", c})
	return append(b, '\n')
}

// EncodeStop renders a stop command as one line, newline included.
func EncodeStop(name string) []byte {
	b, _ := json.Marshal(struct {
		Command string `json:"command"`
		Name    string `json:"name"`
	}{"stop", name})
	return append(b, '\n')
}

// Status is one status line from a proxy.
type Status struct {
	// Started is true for "started", false for "stopped".
	Started bool
	Name    string
	Pid     int
	// WaitStatus is the raw wait status of a stopped service.
	WaitStatus syscall.WaitStatus
}

// DecodeStatus reads one status line. It accepts what the original Perl
// proxy wrote (numbers may come as JSON strings, exit_status may be null).
func DecodeStatus(line []byte) (Status, error) {
	var raw struct {
		Status     string          `json:"status"`
		Name       string          `json:"name"`
		Pid        json.RawMessage `json:"pid"`
		ExitStatus json.RawMessage `json:"exit_status"`
	}
	line = bytes.TrimSpace(line)
	if err := json.Unmarshal(line, &raw); err != nil {
		return Status{}, fmt.Errorf("malformed status line %s", quote(line))
	}
	pid, err := number(raw.Pid)
	if err != nil || pid <= 0 {
		return Status{}, fmt.Errorf("status for '%s' has no valid pid", clip(raw.Name))
	}
	if raw.Name == "" {
		return Status{}, errors.New("status line names no service")
	}
	st := Status{Name: raw.Name, Pid: pid}
	switch raw.Status {
	case "started":
		st.Started = true
	case "stopped":
		es, err := number(raw.ExitStatus)
		if err != nil || es < 0 || es > 0xffff {
			return Status{}, fmt.Errorf("stopped status for '%s' has no valid exit_status", clip(raw.Name))
		}
		st.WaitStatus = syscall.WaitStatus(es)
	default:
		return Status{}, fmt.Errorf("unknown status '%s'", clip(raw.Status))
	}
	return st, nil
}

// number reads a JSON number or a string holding one; null is 0.
func number(raw json.RawMessage) (int, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		var str string
		if json.Unmarshal(raw, &str) != nil {
			return 0, errors.New("not a number")
		}
		n = json.Number(strings.TrimSpace(str))
	}
	i, err := n.Int64()
	if err != nil || i < -1<<31 || i > 1<<31-1 {
		return 0, errors.New("not an integer")
	}
	return int(i), nil
}

// LogLine is one log line from a proxy: `TYPE:SERVICE:MESSAGE`.
type LogLine struct {
	Stderr  bool   // TYPE err (else out)
	Service string // "" for the proxy itself ("-" on the wire)
	Msg     string
}

// ParseLog reads one log line (without its newline).
func ParseLog(line []byte) (LogLine, error) {
	typ, rest, ok := bytes.Cut(line, []byte{':'})
	if !ok {
		return LogLine{}, fmt.Errorf("malformed log line %s", quote(line))
	}
	svc, msg, ok := bytes.Cut(rest, []byte{':'})
	if !ok {
		return LogLine{}, fmt.Errorf("malformed log line %s", quote(line))
	}
	var l LogLine
	switch string(typ) {
	case "out":
	case "err":
		l.Stderr = true
	default:
		return LogLine{}, fmt.Errorf("log line of unknown type %s", quote(typ))
	}
	if s := string(svc); s != "-" {
		l.Service = s
	}
	l.Msg = string(bytes.TrimSuffix(msg, []byte{'\r'}))
	return l, nil
}

// maxQuoted bounds what an error message echoes of bad input.
const maxQuoted = 80

func quote(b []byte) string { return "'" + clip(string(b)) + "'" }

// clip makes untrusted text safe for one log line.
func clip(s string) string {
	if len(s) > maxQuoted {
		s = s[:maxQuoted] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return '?'
		}
		return r
	}, s)
}
