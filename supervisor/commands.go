package supervisor

import (
	"errors"
	"fmt"
	"regexp"
	"sort"

	"github.com/controlfreak-go/cfk/console"
	"github.com/controlfreak-go/cfk/eventlog"
)

// errNoService is the original's answer when a selector matches nothing.
var errNoService = errors.New("Couldn't find a valid service. bailing.")

var serviceNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// execute carries out one request on the loop. done is called exactly
// once, now or (for commands that wait, like destroy) later.
func (s *Supervisor) execute(req console.Request, done func([]string, error)) {
	switch req.Kind {
	case console.KindService:
		done(nil, s.declareService(req.Name, req.Attr, req.Value))
	case console.KindSocket:
		done(nil, s.declareSocket(req.Name, req.Attr, req.Value))
	case console.KindProxy:
		done(nil, s.declareProxy(req.Name, req.Attr, req.Value))
	case console.KindProxyService:
		done(nil, s.declareProxyService(req.Name, req.Service, req.Attr, req.Value))
	case console.KindCommand:
		s.command(req.Verb, req.Args, done)
	default:
		done(nil, fmt.Errorf("unknown command '%s'", req.Kind))
	}
}

// declareService sets an attribute, creating the service if it is new.
func (s *Supervisor) declareService(name, attr, value string) error {
	if !serviceNameRe.MatchString(name) {
		return errors.New("service name is invalid")
	}
	svc := s.services[name]
	if svc == nil {
		cfg := DefaultConfig()
		// Validate before creating, so a bad line leaves nothing behind.
		if err := cfg.Set(attr, value); err != nil {
			return err
		}
		s.services[name] = &service{name: name, cfg: cfg, state: Stopped}
		return nil
	}
	return svc.cfg.Set(attr, value)
}

type commandFunc func(s *Supervisor, args []string, done func([]string, error))

// commands is the table of `command VERB`.
var commands map[string]commandFunc

func init() {
	commands = map[string]commandFunc{
		"start":   actOn(func(s *Supervisor, svc *service) (bool, error) { return true, s.start(svc) }),
		"stop":    actOn(func(s *Supervisor, svc *service) (bool, error) { return true, s.stop(svc) }),
		"restart": actOn(func(s *Supervisor, svc *service) (bool, error) { return true, s.restart(svc) }),
		"up":      actOn((*Supervisor).up),
		"down":    actOn((*Supervisor).down),
		"destroy": (*Supervisor).cmdDestroy,
		"status": listing(func(s *Supervisor, svc *service) string {
			return svc.statusLine(s.proxyField(svc, true))
		}),
		"desc": listing(func(s *Supervisor, svc *service) string {
			return svc.descLine(s.proxyField(svc, false))
		}),
		"pids":        listing((*Supervisor).pidsLine),
		"list":        (*Supervisor).cmdList,
		"version":     func(_ *Supervisor, _ []string, done func([]string, error)) { done([]string{Version}, nil) },
		"logfile":     (*Supervisor).cmdLogFile,
		"proxystatus": (*Supervisor).cmdProxyStatus,
		"proxyup":     (*Supervisor).cmdProxyUp,
		"proxydown":   (*Supervisor).cmdProxyDown,
		"bind":        (*Supervisor).cmdBind,
		"unbind":      (*Supervisor).cmdUnbind,
		"sockets":     (*Supervisor).cmdSockets,
		"mem":         (*Supervisor).cmdMem,
		"dump":        (*Supervisor).cmdDump,
		"scale":       (*Supervisor).cmdScale,
		"rollrestart": (*Supervisor).cmdRollRestart,
		"rollstatus":  (*Supervisor).cmdRollStatus,
		"upgrade":     (*Supervisor).cmdUpgrade,
		"upgrades":    (*Supervisor).cmdUpgrades,
		"shutdown": func(s *Supervisor, _ []string, done func([]string, error)) {
			done(nil, nil)
			s.beginShutdown()
		},
	}
}

func (s *Supervisor) command(verb string, args []string, done func([]string, error)) {
	f, ok := commands[verb]
	if !ok {
		done(nil, fmt.Errorf("unknown command '%s'", verb))
		return
	}
	f(s, args, done)
}

// selectServices reads a selector: `service NAME`, `tag TAG` or `all`.
func (s *Supervisor) selectServices(args []string) ([]*service, error) {
	if len(args) == 0 {
		return nil, errors.New("missing selector: service NAME, tag TAG or all")
	}
	switch args[0] {
	case "service":
		if len(args) != 2 {
			return nil, errors.New("service selector takes exactly 1 argument: name")
		}
		if svc := s.services[args[1]]; svc != nil {
			return []*service{svc}, nil
		}
		return nil, nil
	case "tag":
		if len(args) != 2 {
			return nil, errors.New("tag selector takes exactly 1 argument: tag")
		}
		var out []*service
		for _, svc := range s.sortedServices() {
			if svc.cfg.HasTag(args[1]) {
				out = append(out, svc)
			}
		}
		return out, nil
	case "all":
		if len(args) != 1 {
			return nil, errors.New("all selector takes no argument")
		}
		return s.sortedServices(), nil
	}
	return nil, fmt.Errorf("unknown selector '%s'", args[0])
}

// actOn makes a command that applies act to each selected service and
// answers `done N`, N counting the services it acted on. When it acted on
// none, the first refusal is the answer; when it acted on some, refusals
// are logged (SPEC 1.6b: exactly one final line).
func actOn(act func(*Supervisor, *service) (bool, error)) commandFunc {
	return func(s *Supervisor, args []string, done func([]string, error)) {
		svcs, err := s.selectServices(args)
		if err != nil {
			done(nil, err)
			return
		}
		if len(svcs) == 0 {
			done(nil, errNoService)
			return
		}
		n := 0
		var first error
		for _, svc := range svcs {
			acted, err := act(s, svc)
			if err != nil {
				s.logf(eventlog.Error, "%v", err)
				if first == nil {
					first = err
				}
				continue
			}
			if acted {
				n++
			}
		}
		if n == 0 && first != nil {
			done(nil, first)
			return
		}
		done([]string{fmt.Sprintf("done %d", n)}, nil)
	}
}

// listing makes a command that prints a line per selected service, all
// services by default.
func listing(line func(*Supervisor, *service) string) commandFunc {
	return func(s *Supervisor, args []string, done func([]string, error)) {
		if len(args) == 0 {
			args = []string{"all"}
		}
		svcs, err := s.selectServices(args)
		if err != nil {
			done(nil, err)
			return
		}
		out := make([]string, 0, len(svcs))
		for _, svc := range svcs {
			out = append(out, line(s, svc))
		}
		done(out, nil)
	}
}

func (s *Supervisor) cmdList(args []string, done func([]string, error)) {
	names := make([]string, 0, len(s.services))
	for name := range s.services {
		names = append(names, name)
	}
	sort.Strings(names)
	done(names, nil)
}

// cmdDestroy brings the selected services down and forgets them. It
// answers once every one of them is gone.
func (s *Supervisor) cmdDestroy(args []string, done func([]string, error)) {
	svcs, err := s.selectServices(args)
	if err != nil {
		done(nil, err)
		return
	}
	if len(svcs) == 0 {
		done(nil, errNoService)
		return
	}
	s.destroyAll(svcs, func() { done(nil, nil) })
}

// destroyAll brings services down and forgets them; then it calls gone.
func (s *Supervisor) destroyAll(svcs []*service, gone func()) {
	left := len(svcs)
	for _, svc := range svcs {
		svc := svc
		if _, err := s.down(svc); err != nil {
			s.logf(eventlog.Error, "destroy: %v", err)
		}
		s.whenDown(svc, func() {
			if s.services[svc.name] == svc {
				for k := timerKind(0); k < timerKinds; k++ {
					s.disarm(svc, k)
				}
				delete(s.services, svc.name)
				s.logf(eventlog.Info, "Destroying service '%s'", svc.name)
			}
			left--
			if left == 0 {
				gone()
			}
		})
	}
}

// cmdLogFile answers `command logfile` with the path of cfkd's log, where
// the daemon's events and the services' output go (cfkctl logs reads it),
// and `command logfile SERVICE` with the file that service's output goes
// to: its log_file, or cfkd's log.
func (s *Supervisor) cmdLogFile(args []string, done func([]string, error)) {
	if len(args) > 1 {
		done(nil, errors.New("usage: command logfile [SERVICE]"))
		return
	}
	if len(args) == 1 {
		svc := s.services[args[0]]
		if svc == nil {
			done(nil, errNoService)
			return
		}
		if f := s.logFile(svc); f.Path != "" {
			done([]string{f.Path}, nil)
			return
		}
	}
	if s.opts.LogPath == "" {
		done(nil, errors.New("cfkd has no log file"))
		return
	}
	done([]string{s.opts.LogPath}, nil)
}
