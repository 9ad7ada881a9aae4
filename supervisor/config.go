package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Defaults of the original (SPEC 1.3).
const (
	DefaultStartWait  = 1 * time.Second
	DefaultStopWait   = 2 * time.Second
	DefaultMaxRetries = 8
)

// errInvalidValue is the original's answer to a value an attribute refuses.
var errInvalidValue = errors.New("invalid value")

// Config is everything an operator declares about a service. It is plain
// data: copying it copies the service.
type Config struct {
	// Cmd is the command as declared: a string run by Perl's exec rule, or,
	// when CmdArgv is set, a JSON array exec'd as is.
	Cmd     string
	CmdArgv []string

	Desc string
	Tags []string // sorted, no duplicates

	// Env holds add_env settings in the order they were given.
	Env []EnvVar

	StartWait         time.Duration
	StopWait          time.Duration
	RespawnOnFail     bool
	RespawnOnStop     bool
	RespawnMaxRetries int
	IgnoreStdout      bool
	IgnoreStderr      bool
	NoNewSession      bool
	TieStdinTo        string

	// Ready says when a start counts as done: "" (alive for
	// startwait_secs, as in the original) or "notify" (READY=1 on the
	// notify socket, with startwait_secs as the deadline).
	Ready string
	// Watchdog, when set, kills and restarts a service that has not sent
	// WATCHDOG=1 for this long.
	Watchdog time.Duration

	// Sockets are handed to the child as fds 3, 4, ... in this order,
	// with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID (systemd's protocol).
	Sockets []string

	// LogFile, when set, takes the service's output instead of cfkd's log
	// (a path relative to cfkd's home, or absolute), rotated when a line
	// would take it past LogMaxBytes (0: never), keeping LogKeep old
	// copies.
	LogFile     string
	LogMaxBytes int64
	LogKeep     int
}

// Defaults of a service's own log file.
const (
	DefaultLogMaxBytes = 10 << 20
	DefaultLogKeep     = 5
)

// EnvVar is one add_env setting.
type EnvVar struct{ Key, Value string }

// DefaultConfig is the configuration of a newly declared service.
func DefaultConfig() Config {
	return Config{
		StartWait:         DefaultStartWait,
		StopWait:          DefaultStopWait,
		RespawnOnFail:     true,
		RespawnMaxRetries: DefaultMaxRetries,
		LogMaxBytes:       DefaultLogMaxBytes,
		LogKeep:           DefaultLogKeep,
	}
}

// HasCmd reports whether a command is declared.
func (c *Config) HasCmd() bool { return c.Cmd != "" || len(c.CmdArgv) > 0 }

// CmdText is the command as the operator wrote it (a JSON array for argv).
func (c *Config) CmdText() string {
	if len(c.CmdArgv) > 0 {
		b, _ := json.Marshal(c.CmdArgv)
		return string(b)
	}
	return c.Cmd
}

// HasTag reports whether the service carries tag t.
func (c *Config) HasTag(t string) bool {
	i := sort.SearchStrings(c.Tags, t)
	return i < len(c.Tags) && c.Tags[i] == t
}

// attribute is one settable attribute: how to set it from its text and
// how to unset it (an empty value).
type attribute struct {
	set   func(c *Config, v string) error
	unset func(c *Config)
}

// serviceAttrs is the one table of service attributes (SPEC 1.3): the
// console's `service NAME ATTR=VALUE` goes through it and nothing else.
var serviceAttrs = map[string]attribute{
	"cmd": {
		set: func(c *Config, v string) error {
			if strings.HasPrefix(v, "[") {
				var argv []string
				if err := json.Unmarshal([]byte(v), &argv); err != nil || len(argv) == 0 || argv[0] == "" {
					return errInvalidValue
				}
				c.Cmd, c.CmdArgv = "", argv
				return nil
			}
			c.Cmd, c.CmdArgv = v, nil
			return nil
		},
		unset: func(c *Config) { c.Cmd, c.CmdArgv = "", nil },
	},
	"desc": {
		set: func(c *Config, v string) error {
			c.Desc = strings.Map(func(r rune) rune {
				if r == '\n' || r == '\r' || r == '\t' || r == 0 {
					return -1
				}
				return r
			}, v)
			return nil
		},
		unset: func(c *Config) { c.Desc = "" },
	},
	"tags": {
		set: func(c *Config, v string) error {
			c.Tags = parseTags(v)
			return nil
		},
		unset: func(c *Config) { c.Tags = nil },
	},
	"add_env": {
		set: func(c *Config, v string) error {
			k, val, ok := strings.Cut(v, "=")
			if !ok || !validEnvKey(k) {
				return errInvalidValue
			}
			for i := range c.Env {
				if c.Env[i].Key == k {
					c.Env[i].Value = val
					return nil
				}
			}
			c.Env = append(c.Env, EnvVar{k, val})
			return nil
		},
		// An empty add_env clears what add_env added.
		unset: func(c *Config) { c.Env = nil },
	},
	"startwait_secs":  durationAttr(func(c *Config) *time.Duration { return &c.StartWait }, DefaultStartWait),
	"stopwait_secs":   durationAttr(func(c *Config) *time.Duration { return &c.StopWait }, DefaultStopWait),
	"respawn_on_fail": boolAttr(func(c *Config) *bool { return &c.RespawnOnFail }, true),
	"respawn_on_stop": boolAttr(func(c *Config) *bool { return &c.RespawnOnStop }, false),
	"ignore_stdout":   boolAttr(func(c *Config) *bool { return &c.IgnoreStdout }, false),
	"ignore_stderr":   boolAttr(func(c *Config) *bool { return &c.IgnoreStderr }, false),
	"no_new_session":  boolAttr(func(c *Config) *bool { return &c.NoNewSession }, false),
	"respawn_max_retries": {
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return errInvalidValue
			}
			c.RespawnMaxRetries = n
			return nil
		},
		unset: func(c *Config) { c.RespawnMaxRetries = DefaultMaxRetries },
	},
	"tie_stdin_to": {
		set: func(c *Config, v string) error {
			if !socketNameRe.MatchString(v) {
				return errInvalidValue
			}
			c.TieStdinTo = v
			return nil
		},
		unset: func(c *Config) { c.TieStdinTo = "" },
	},
}

// readyNotify is ready=notify.
const readyNotify = "notify"

func init() {
	serviceAttrs["ready"] = attribute{
		set: func(c *Config, v string) error {
			switch strings.ToLower(v) {
			case "notify":
				c.Ready = readyNotify
			case "running", "startwait":
				c.Ready = ""
			default:
				return errInvalidValue
			}
			return nil
		},
		unset: func(c *Config) { c.Ready = "" },
	}
	serviceAttrs["watchdog_secs"] = durationAttr(func(c *Config) *time.Duration { return &c.Watchdog }, 0)
	serviceAttrs["log_file"] = attribute{
		set: func(c *Config, v string) error {
			if strings.ContainsAny(v, "\x00") || strings.HasSuffix(v, "/") {
				return errInvalidValue
			}
			c.LogFile = v
			return nil
		},
		unset: func(c *Config) { c.LogFile = "" },
	}
	serviceAttrs["log_max_bytes"] = attribute{
		set: func(c *Config, v string) error {
			n, err := parseBytes(v)
			if err != nil {
				return errInvalidValue
			}
			c.LogMaxBytes = n
			return nil
		},
		unset: func(c *Config) { c.LogMaxBytes = DefaultLogMaxBytes },
	}
	serviceAttrs["log_keep"] = attribute{
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 1000 {
				return errInvalidValue
			}
			c.LogKeep = n
			return nil
		},
		unset: func(c *Config) { c.LogKeep = DefaultLogKeep },
	}
	serviceAttrs["sockets"] = attribute{
		set: func(c *Config, v string) error {
			var names []string
			for _, n := range strings.Split(strings.Join(strings.Fields(v), ""), ",") {
				if n == "" {
					continue
				}
				if !socketNameRe.MatchString(n) {
					return errInvalidValue
				}
				for _, seen := range names {
					if seen == n {
						return errInvalidValue
					}
				}
				names = append(names, n)
			}
			c.Sockets = names
			return nil
		},
		unset: func(c *Config) { c.Sockets = nil },
	}
}

// usesSocket reports whether the service takes socket name, as stdin or fd.
func (c *Config) usesSocket(name string) bool {
	if c.TieStdinTo == name {
		return true
	}
	for _, n := range c.Sockets {
		if n == name {
			return true
		}
	}
	return false
}

var socketNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Set sets attribute name to value; an empty value unsets it. Errors are
// the original's: `invalid property 'X'` and `invalid value`.
func (c *Config) Set(name, value string) error {
	a, ok := serviceAttrs[name]
	if !ok {
		return fmt.Errorf("invalid property '%s'", name)
	}
	if value == "" {
		a.unset(c)
		return nil
	}
	return a.set(c, value)
}

func durationAttr(field func(*Config) *time.Duration, def time.Duration) attribute {
	return attribute{
		set: func(c *Config, v string) error {
			d, err := parseSeconds(v)
			if err != nil {
				return err
			}
			*field(c) = d
			return nil
		},
		unset: func(c *Config) { *field(c) = def },
	}
}

func boolAttr(field func(*Config) *bool, def bool) attribute {
	return attribute{
		set: func(c *Config, v string) error {
			b, err := ParseBool(v)
			if err != nil {
				return err
			}
			*field(c) = b
			return nil
		},
		unset: func(c *Config) { *field(c) = def },
	}
}

// parseSeconds reads a non-negative number of seconds, decimals allowed.
func parseSeconds(v string) (time.Duration, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f > 365*24*3600 {
		return 0, errInvalidValue
	}
	return time.Duration(f * float64(time.Second)), nil
}

// ParseBool accepts exactly the original's words, in any case:
// 1/true/on/enabled/yes and 0/false/off/disabled/no.
func ParseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "true", "on", "enabled", "yes":
		return true, nil
	case "0", "false", "off", "disabled", "no":
		return false, nil
	}
	return false, errInvalidValue
}

// parseTags reads a comma-separated list, spaces removed, as a sorted set.
func parseTags(v string) []string {
	v = strings.Join(strings.Fields(v), "")
	var tags []string
	for _, t := range strings.Split(v, ",") {
		if t != "" {
			tags = append(tags, t)
		}
	}
	sort.Strings(tags)
	out := tags[:0]
	for i, t := range tags {
		if i == 0 || t != tags[i-1] {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func validEnvKey(k string) bool {
	if k == "" {
		return false
	}
	return !strings.ContainsAny(k, "=\x00")
}

// parseBytes reads a size: a whole number of bytes, or with a K, M or G
// suffix (powers of 1024), as in 10M.
func parseBytes(v string) (int64, error) {
	v = strings.TrimSpace(v)
	if v == "" || v[0] < '0' || v[0] > '9' {
		return 0, errInvalidValue
	}
	mult := int64(1)
	switch strings.ToUpper(v[len(v)-1:]) {
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	}
	if mult > 1 {
		v = v[:len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, errInvalidValue
	}
	return n * mult, nil
}
