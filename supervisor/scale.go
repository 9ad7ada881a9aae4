package supervisor

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/controlfreak-go/cfk/eventlog"
)

// numbered splits a name into its prefix and its trailing number.
var numbered = regexp.MustCompile(`^(.*?)([0-9]+)$`)

// cmdScale answers `command scale tag TAG N`: afterwards exactly N
// services carry the tag. New ones are copies of the highest-numbered
// member (every attribute, tags, sockets, proxy), named by the members'
// pattern (web001, web002, ...) and started; shrinking stops, then
// destroys, the highest-numbered ones, and answers once they are gone.
func (s *Supervisor) cmdScale(args []string, done func([]string, error)) {
	if len(args) != 3 || args[0] != "tag" {
		done(nil, errors.New("usage: command scale tag TAG N"))
		return
	}
	tag := args[1]
	n, err := strconv.Atoi(args[2])
	if err != nil || n < 0 {
		done(nil, fmt.Errorf("scale needs a number of services, not '%s'", args[2]))
		return
	}
	if s.shuttingDown {
		done(nil, ErrShuttingDown)
		return
	}
	members, _ := s.selectServices([]string{"tag", tag})
	if len(members) == 0 {
		done(nil, fmt.Errorf("no service is tagged '%s': declare one to copy first", tag))
		return
	}
	prefix, width := "", 0
	nums := map[*service]int{}
	for _, m := range members {
		sub := numbered.FindStringSubmatch(m.name)
		if sub == nil || (prefix != "" && sub[1] != prefix) || sub[1] == "" {
			done(nil, fmt.Errorf("the services tagged '%s' are not named as one prefix and a number (like web001, web002): cannot scale", tag))
			return
		}
		prefix = sub[1]
		width = max(width, len(sub[2]))
		nums[m], _ = strconv.Atoi(sub[2])
	}
	sort.Slice(members, func(i, j int) bool { return nums[members[i]] < nums[members[j]] })
	have := len(members)
	switch {
	case n > have:
		tmpl := members[have-1]
		next := nums[tmpl]
		var added []string
		for len(added) < n-have {
			next++
			name := fmt.Sprintf("%s%0*d", prefix, width, next)
			if s.services[name] != nil {
				continue // a service outside the tag has that name
			}
			svc := &service{name: name, cfg: tmpl.cfg, proxy: tmpl.proxy, state: Stopped}
			svc.cfg.Tags = append([]string(nil), tmpl.cfg.Tags...)
			svc.cfg.Env = append([]EnvVar(nil), tmpl.cfg.Env...)
			svc.cfg.Sockets = append([]string(nil), tmpl.cfg.Sockets...)
			svc.cfg.CmdArgv = append([]string(nil), tmpl.cfg.CmdArgv...)
			if len(svc.cfg.CmdArgv) == 0 {
				svc.cfg.CmdArgv = nil
			}
			s.services[name] = svc
			added = append(added, name)
			if err := s.start(svc); err != nil {
				s.logf(eventlog.Error, "scale: %v", err)
			}
		}
		s.logf(eventlog.Info, "scaled tag %s from %d to %d: added %s", tag, have, n, strings.Join(added, ", "))
		done([]string{fmt.Sprintf("scaled %s from %d to %d: added %s", tag, have, n, strings.Join(added, " "))}, nil)
	case n < have:
		gone := members[n:]
		var names []string
		for _, m := range gone {
			names = append(names, m.name)
		}
		s.logf(eventlog.Info, "scaling tag %s from %d to %d: removing %s", tag, have, n, strings.Join(names, ", "))
		s.destroyAll(gone, func() {
			done([]string{fmt.Sprintf("scaled %s from %d to %d: removed %s", tag, have, n, strings.Join(names, " "))}, nil)
		})
	default:
		done([]string{fmt.Sprintf("%s already has %d services", tag, n)}, nil)
	}
}
