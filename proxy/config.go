package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

var errInvalidValue = errors.New("invalid value")

// Config is what an operator declares about a proxy: plain data.
type Config struct {
	Cmd     string   // as a string, run by the same rule as a service's
	CmdArgv []string // or a JSON array
	Desc    string
	Env     [][2]string // add_env, in order
	NoAuto  bool        // started and stopped only by proxyup / proxydown
}

// HasCmd reports whether a command is declared.
func (c *Config) HasCmd() bool { return c.Cmd != "" || len(c.CmdArgv) > 0 }

// CmdText is the command as written.
func (c *Config) CmdText() string {
	if len(c.CmdArgv) > 0 {
		b, _ := json.Marshal(c.CmdArgv)
		return string(b)
	}
	return c.Cmd
}

// Set sets a proxy attribute (`proxy NAME ATTR=VALUE`); an empty value
// unsets it. Errors are the original's words.
func (c *Config) Set(attr, v string) error {
	switch attr {
	case "cmd":
		c.Cmd, c.CmdArgv = "", nil
		if strings.HasPrefix(v, "[") {
			var argv []string
			if err := json.Unmarshal([]byte(v), &argv); err != nil || len(argv) == 0 || argv[0] == "" {
				return errInvalidValue
			}
			c.CmdArgv = argv
			return nil
		}
		c.Cmd = v
	case "desc":
		c.Desc = strings.Map(func(r rune) rune {
			if r == '\n' || r == '\r' || r == '\t' || r == 0 {
				return -1
			}
			return r
		}, v)
	case "add_env":
		if v == "" {
			c.Env = nil
			return nil
		}
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" || strings.ContainsRune(k, 0) {
			return errInvalidValue
		}
		for i := range c.Env {
			if c.Env[i][0] == k {
				c.Env[i][1] = val
				return nil
			}
		}
		c.Env = append(c.Env, [2]string{k, val})
	case "noauto":
		if v == "" {
			c.NoAuto = false
			return nil
		}
		switch strings.ToLower(v) {
		case "1", "true", "on", "enabled", "yes":
			c.NoAuto = true
		case "0", "false", "off", "disabled", "no":
			c.NoAuto = false
		default:
			return errInvalidValue
		}
	default:
		return fmt.Errorf("invalid property '%s'", attr)
	}
	return nil
}
