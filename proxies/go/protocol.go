package cfkproxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// What cfkd gives a proxy (PROTOCOL.md, "What the proxy gets").
const (
	envCommandFd  = "_CFK_COMMAND_FD"
	envStatusFd   = "_CFK_STATUS_FD"
	envLogFd      = "_CFK_LOG_FD"
	envSockPrefix = "_CFK_SOCK_"
)

// What every service gets, proxied or not.
const (
	envEnabled = "CONTROL_FREAK_ENABLED"
	envService = "CONTROL_FREAK_SERVICE"
)

// systemd's socket activation protocol (sd_listen_fds(3)).
const (
	envListenFds     = "LISTEN_FDS"
	envListenFdNames = "LISTEN_FDNAMES"
	envListenPid     = "LISTEN_PID"
	listenFdsStart   = 3 // SD_LISTEN_FDS_START
)

// What the proxy tells the worker it re-executes, and nobody else: their
// presence is what makes Main run a worker. Main removes them from the
// worker's environment before Serve runs.
const (
	envSharedFd = "_CFKPROXY_SHARED_FD" // the sealed memfd's fd number
	envCmd      = "_CFKPROXY_CMD"       // the service's cmd, a JSON array
	envFail     = "_CFKPROXY_FAIL"      // the worker must exit 1 at once
)

// command is one line from cfkd: start or stop.
type command struct {
	verb string // "start" or "stop"
	name string

	// start only
	cmd          []string
	env          []string // K=V, in a stable order
	tieStdinTo   string
	sockets      []string
	ignoreStdout bool
	ignoreStderr bool
	newSession   bool
}

// wireCommand is a command as it is on the wire. Fields whose JSON type
// varies with who sent them (Perl values vs JSON booleans) stay raw.
type wireCommand struct {
	Command      string                     `json:"command"`
	Name         string                     `json:"name"`
	Cmd          json.RawMessage            `json:"cmd"`
	Env          map[string]json.RawMessage `json:"env"`
	TieStdinTo   json.RawMessage            `json:"tie_stdin_to"`
	Sockets      []string                   `json:"sockets"`
	IgnoreStdout json.RawMessage            `json:"ignore_stdout"`
	IgnoreStderr json.RawMessage            `json:"ignore_stderr"`
	NoNewSession json.RawMessage            `json:"no_new_session"`
}

// parseCommand reads one command line. The errors are sentences for an
// `err:-:` log line.
func parseCommand(line []byte) (*command, error) {
	var w wireCommand
	if err := json.Unmarshal(line, &w); err != nil {
		return nil, fmt.Errorf("parse error in command %q: %v", line, err)
	}
	if w.Command != "start" && w.Command != "stop" {
		return nil, fmt.Errorf("couldn't understand command %q", line)
	}
	if err := checkName(w.Name); err != nil {
		return nil, fmt.Errorf("%s command %q: %v", w.Command, line, err)
	}
	c := &command{verb: w.Command, name: w.Name}
	if c.verb == "stop" {
		return c, nil
	}
	var err error
	if c.cmd, err = parseCmd(w.Cmd); err != nil {
		return nil, fmt.Errorf("start %s: cmd: %v", w.Name, err)
	}
	keys := make([]string, 0, len(w.Env))
	for k := range w.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("start %s: invalid environment variable name %q", w.Name, k)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, err := scalarText(w.Env[k])
		if err != nil {
			return nil, fmt.Errorf("start %s: env %s: %v", w.Name, k, err)
		}
		c.env = append(c.env, k+"="+v)
	}
	if c.tieStdinTo, err = scalarText(w.TieStdinTo); err != nil {
		return nil, fmt.Errorf("start %s: tie_stdin_to: %v", w.Name, err)
	}
	for _, s := range w.Sockets {
		if s == "" || strings.ContainsAny(s, ":\x00") {
			return nil, fmt.Errorf("start %s: invalid socket name %q", w.Name, s)
		}
	}
	c.sockets = w.Sockets
	c.ignoreStdout = perlTrue(w.IgnoreStdout)
	c.ignoreStderr = perlTrue(w.IgnoreStderr)
	c.newSession = !perlTrue(w.NoNewSession)
	return c, nil
}

// checkName refuses the names that would break the log line framing
// (`TYPE:SERVICE:MESSAGE`) or an environment variable.
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("no service name")
	}
	if name == "-" || strings.ContainsAny(name, ":\n\r\x00") {
		return fmt.Errorf("invalid service name %q", name)
	}
	return nil
}

// parseCmd takes cmd as a string (split on white space: it is not a
// shell line) or an array of strings.
func parseCmd(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	if raw[0] == '[' {
		var argv []string
		if err := json.Unmarshal(raw, &argv); err != nil {
			return nil, fmt.Errorf("want a string or an array of strings")
		}
		return argv, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("want a string or an array of strings")
	}
	return strings.Fields(s), nil
}

// scalarText turns a JSON scalar into the text Perl would have made of it:
// null and absent are empty, numbers keep their shortest form, true is "1"
// and false "".
func scalarText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", err
	}
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		if strings.IndexByte(v, 0) >= 0 {
			return "", fmt.Errorf("contains a NUL byte")
		}
		return v, nil
	case bool:
		if v {
			return "1", nil
		}
		return "", nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	default:
		return "", fmt.Errorf("want a string, a number or null")
	}
}

// perlTrue is Perl's truth of a JSON value: false, null, absent, 0, ""
// and "0" are false; anything else is true. The original cfkd sent Perl
// values (0, 1, "", null); ours sends JSON booleans.
func perlTrue(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return false
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return false
	}
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case float64:
		return v != 0
	case string:
		return v != "" && v != "0"
	default:
		return true // a non-empty array or object reference is true in Perl
	}
}

// status is one line to cfkd.
type status struct {
	Status     string `json:"status"` // "started" or "stopped"
	Name       string `json:"name"`
	Pid        int    `json:"pid"`
	ExitStatus *int   `json:"exit_status,omitempty"` // the raw wait status, as Perl's $?
}

func startedLine(name string, pid int) []byte {
	b, _ := json.Marshal(status{Status: "started", Name: name, Pid: pid})
	return append(b, '\n')
}

func stoppedLine(name string, pid int, waitStatus int) []byte {
	b, _ := json.Marshal(status{Status: "stopped", Name: name, Pid: pid, ExitStatus: &waitStatus})
	return append(b, '\n')
}

// Log line types (PROTOCOL.md, "Logs").
const (
	logOut = "out"
	logErr = "err"
	// proxyService is the SERVICE of a line about the proxy itself.
	proxyService = "-"
)

// logLine frames one message. The message must not hold a newline.
func logLine(typ, service, msg string) []byte {
	b := make([]byte, 0, len(typ)+len(service)+len(msg)+3)
	b = append(b, typ...)
	b = append(b, ':')
	b = append(b, service...)
	b = append(b, ':')
	b = append(b, msg...)
	return append(b, '\n')
}

// oneLine makes an error or other text safe for one log line.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}
