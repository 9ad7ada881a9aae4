package supervisor

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/controlfreak-go/cfk/console"
	"github.com/controlfreak-go/cfk/listener"
	"github.com/controlfreak-go/cfk/proxy"
)

// Attrs lists the attribute settings that recreate c on a new service,
// every attribute included, in the language's words.
func (c *Config) Attrs() [][2]string {
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	out := [][2]string{{"cmd", c.CmdText()}}
	if c.Desc != "" {
		out = append(out, [2]string{"desc", c.Desc})
	}
	if len(c.Tags) > 0 {
		out = append(out, [2]string{"tags", strings.Join(c.Tags, ",")})
	}
	for _, kv := range c.Env {
		out = append(out, [2]string{"add_env", kv.Key + "=" + kv.Value})
	}
	out = append(out,
		[2]string{"startwait_secs", seconds(c.StartWait)},
		[2]string{"stopwait_secs", seconds(c.StopWait)},
		[2]string{"respawn_on_fail", b(c.RespawnOnFail)},
		[2]string{"respawn_on_stop", b(c.RespawnOnStop)},
		[2]string{"respawn_max_retries", strconv.Itoa(c.RespawnMaxRetries)},
		[2]string{"ignore_stdout", b(c.IgnoreStdout)},
		[2]string{"ignore_stderr", b(c.IgnoreStderr)},
		[2]string{"no_new_session", b(c.NoNewSession)},
	)
	if c.TieStdinTo != "" {
		out = append(out, [2]string{"tie_stdin_to", c.TieStdinTo})
	}
	if c.Ready != "" {
		out = append(out, [2]string{"ready", c.Ready})
	}
	if c.Watchdog > 0 {
		out = append(out, [2]string{"watchdog_secs", seconds(c.Watchdog)})
	}
	if len(c.Sockets) > 0 {
		out = append(out, [2]string{"sockets", strings.Join(c.Sockets, ",")})
	}
	if c.LogFile != "" {
		out = append(out, [2]string{"log_file", c.LogFile})
	}
	if c.LogMaxBytes != DefaultLogMaxBytes {
		out = append(out, [2]string{"log_max_bytes", strconv.FormatInt(c.LogMaxBytes, 10)})
	}
	if c.LogKeep != DefaultLogKeep {
		out = append(out, [2]string{"log_keep", strconv.Itoa(c.LogKeep)})
	}
	return out
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// socketAttrs lists the settings that recreate a socket declaration.
func socketAttrs(sp listener.Spec) [][2]string {
	var out [][2]string
	add := func(k, v string) {
		if v != "" {
			out = append(out, [2]string{k, v})
		}
	}
	add("host", sp.Host)
	add("service", sp.Service)
	if sp.ListenQSize > 0 {
		add("listen_qsize", strconv.Itoa(sp.ListenQSize))
	}
	if sp.Nonblocking {
		add("nonblocking", "1")
	}
	if sp.Mode != 0 {
		add("mode", fmt.Sprintf("%#o", uint32(sp.Mode.Perm())))
	}
	add("owner", sp.Owner)
	add("group", sp.Group)
	return out
}

// proxyAttrs lists the settings that recreate a proxy declaration.
func proxyAttrs(c proxy.Config) [][2]string {
	var out [][2]string
	if c.HasCmd() {
		out = append(out, [2]string{"cmd", c.CmdText()})
	}
	if c.Desc != "" {
		out = append(out, [2]string{"desc", c.Desc})
	}
	for _, kv := range c.Env {
		out = append(out, [2]string{"add_env", kv[0] + "=" + kv[1]})
	}
	if c.NoAuto {
		out = append(out, [2]string{"noauto", "1"})
	}
	return out
}

// cmdDump answers `command dump [SELECTOR]`: the lines of the language
// that declare the selected services exactly, preceded by the sockets and
// proxies they use. Loaded into a fresh cfkd they give the same services.
func (s *Supervisor) cmdDump(args []string, done func([]string, error)) {
	if len(args) == 0 {
		args = []string{"all"}
	}
	svcs, err := s.selectServices(args)
	if err != nil {
		done(nil, err)
		return
	}
	if len(svcs) == 0 {
		done(nil, errNoService)
		return
	}
	var out []string
	line := func(r console.Request) { out = append(out, r.String()) }
	seenSock, seenProxy := map[string]bool{}, map[string]bool{}
	for _, svc := range svcs {
		for _, name := range append([]string{svc.cfg.TieStdinTo}, svc.cfg.Sockets...) {
			e := s.sockets[name]
			if name == "" || seenSock[name] || e == nil {
				continue
			}
			seenSock[name] = true
			for _, a := range socketAttrs(e.spec) {
				line(console.Request{Kind: console.KindSocket, Name: name, Attr: a[0], Value: a[1]})
			}
		}
		if p := s.proxies[svc.proxy]; p != nil && !seenProxy[p.name] {
			seenProxy[p.name] = true
			for _, a := range proxyAttrs(p.cfg) {
				line(console.Request{Kind: console.KindProxy, Name: p.name, Attr: a[0], Value: a[1]})
			}
		}
	}
	for _, svc := range svcs {
		for i, a := range svc.cfg.Attrs() {
			if i == 0 && svc.proxy != "" {
				line(console.Request{Kind: console.KindProxyService, Name: svc.proxy, Service: svc.name, Attr: a[0], Value: a[1]})
				continue
			}
			line(console.Request{Kind: console.KindService, Name: svc.name, Attr: a[0], Value: a[1]})
		}
	}
	done(out, nil)
}
