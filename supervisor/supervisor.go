package supervisor

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/controlfreak-go/cfk/console"
	"github.com/controlfreak-go/cfk/eventlog"
)

// Version is what `command version` answers.
const Version = "0.1.0"

// ErrShuttingDown answers requests that would start something while cfkd
// is going down.
var ErrShuttingDown = errors.New("cfkd is shutting down")

// Options configure a Supervisor.
type Options struct {
	// Home is cfkd's home directory, exported to children as CFKD_HOME.
	Home string
	// Log receives daemon events and service output. May be nil.
	Log *eventlog.Logger
	// LogPath is Log's file, which `command logfile` names (for cfkctl
	// logs); "" when there is none.
	LogPath string
	// Env is the environment every child starts from (cfkd's own when nil).
	Env []string
	// OnShutdown is called (from the loop, so it must not block) when a
	// shutdown begins, whether asked by a signal or `command shutdown`.
	OnShutdown func()
	// NotifyPath is where the sd_notify socket every service gets as
	// NOTIFY_SOCKET is bound; empty means no readiness notifications.
	NotifyPath string
	// Binary is what `command upgrade` re-executes when given no path.
	Binary string
	// MainFds lists the fds main hands to the next cfkd (console listener,
	// lock), by name; they come back in Handover.Main.
	MainFds func() map[string]int
	// MainData is what else main hands to the next cfkd (the console
	// token), by name; it comes back in Handover.Extra.
	MainData func() map[string]string
	// Exec re-executes cfkd in place with extra environment; it returns
	// only when exec failed. Nil: no in-place upgrade.
	Exec func(binary string, env []string) error
	// Inherited are listening sockets cfkd was started with (systemd
	// socket activation), by name: a socket declared with the same name
	// adopts its fd instead of binding.
	Inherited map[string]*os.File
}

// Supervisor owns every service. Its exported methods are safe to call from
// any goroutine: they send the loop a message.
type Supervisor struct {
	opts Options
	log  *eventlog.Logger
	env  []string

	events chan event
	quit   chan struct{} // closed when the loop has returned

	// Loop-owned state.
	services     map[string]*service
	byPid        map[int]*service
	run          runner
	out          *outputReader
	shuttingDown bool
	shutdownDone chan struct{}
	lingering    map[int]bool         // process groups left by a stopped service, awaiting stopwait
	retired      map[int]*retiredProc // old processes of overlapping restarts, by pid
	sockets      map[string]*socketEntry
	proxies      map[string]*proxyEntry
	proxyByPid   map[int]*proxyEntry
	idleCheck    map[string]bool // proxies to look at once the event is handled
	notify       *notifier
	rolling      []*rollingOp
	rollingSeq   int
	upgrades     int
}

type event interface{}

type requestEvent struct {
	req   console.Request
	reply chan reply
}

type reply struct {
	lines []string
	err   error
}

type exitEvent struct {
	pid    int
	status syscall.WaitStatus
}

type timerEvent struct {
	name string
	svc  *service
	kind timerKind
	gen  uint64
}

type lingerEvent struct{ pgid int }

type shutdownEvent struct{}

type funcEvent struct{ f func() }

// New prepares a Supervisor; Run starts it.
func New(opts Options) (*Supervisor, error) {
	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(cleanEnv(env), "CFKD_HOME="+opts.Home)
	out, err := newOutputReader(opts.Log)
	if err != nil {
		return nil, err
	}
	run, err := newForkRunner(out)
	if err != nil {
		out.close()
		return nil, err
	}
	var notify *notifier
	if opts.NotifyPath != "" {
		if notify, err = openNotifier(opts.NotifyPath); err != nil {
			out.close()
			return nil, err
		}
	}
	return &Supervisor{
		opts:         opts,
		log:          opts.Log,
		env:          env,
		events:       make(chan event, 1024),
		quit:         make(chan struct{}),
		services:     map[string]*service{},
		byPid:        map[int]*service{},
		run:          run,
		out:          out,
		shutdownDone: make(chan struct{}),
		lingering:    map[int]bool{},
		retired:      map[int]*retiredProc{},
		sockets:      map[string]*socketEntry{},
		proxies:      map[string]*proxyEntry{},
		proxyByPid:   map[int]*proxyEntry{},
		idleCheck:    map[string]bool{},
		notify:       notify,
	}, nil
}

// cleanEnv drops what belongs to cfkd's own start-up and must not leak
// into services.
func cleanEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "CFKD_HOME", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
			"WATCHDOG_USEC", "WATCHDOG_PID", daemonEnv:
			continue
		}
		out = append(out, kv)
	}
	return out
}

// daemonEnv marks cfkd's own re-executions when it detaches.
const daemonEnv = "_CFKD_DAEMON"

// Run is the loop. It returns once a shutdown has completed.
func (s *Supervisor) Run() {
	defer close(s.quit)
	stopReaper := startReaper(s)
	defer stopReaper()
	if s.notify != nil {
		s.notify.start(func(ev notifyEvent) bool { return s.send(ev) })
		defer func() {
			if s.notify != nil {
				s.notify.close()
			}
		}()
	}
	defer s.out.close()
	for {
		select {
		case ev := <-s.events:
			s.handle(ev)
			for name := range s.idleCheck {
				delete(s.idleCheck, name)
				s.proxyIdle(name)
			}
		case <-s.shutdownDone:
			s.logf(eventlog.Info, "all services are down; exiting")
			s.closeSockets()
			return
		}
	}
}

// Done is closed when the loop has returned.
func (s *Supervisor) Done() <-chan struct{} { return s.quit }

// Shutdown asks for every service to go down and the loop to end, as on
// SIGTERM. It does not wait.
func (s *Supervisor) Shutdown() { s.send(shutdownEvent{}) }

// ReopenLogs reopens the services' own log files (log_file), as cfkd's
// log is reopened on SIGUSR1 after logrotate has moved them.
func (s *Supervisor) ReopenLogs() error {
	ch := make(chan error, 1)
	if !s.send(funcEvent{func() {
		out := s.out
		// Reopening waits for the files' writers: not in the loop.
		go func() { ch <- out.reopenFiles() }()
	}}) {
		return ErrShuttingDown
	}
	select {
	case err := <-ch:
		return err
	case <-s.quit:
		// The loop ended before it took the request.
		return ErrShuttingDown
	}
}

// Execute carries out one request of the language and waits for its
// answer. It implements console.Handler.
func (s *Supervisor) Execute(req console.Request) ([]string, error) {
	ch := make(chan reply, 1)
	if !s.send(requestEvent{req: req, reply: ch}) {
		return nil, ErrShuttingDown
	}
	select {
	case r := <-ch:
		return r.lines, r.err
	case <-s.quit:
		return nil, ErrShuttingDown
	}
}

// send delivers an event to the loop unless the loop is gone.
func (s *Supervisor) send(ev event) bool {
	select {
	case s.events <- ev:
		return true
	case <-s.quit:
		return false
	}
}

func (s *Supervisor) handle(ev event) {
	switch ev := ev.(type) {
	case requestEvent:
		s.execute(ev.req, func(lines []string, err error) { ev.reply <- reply{lines, err} })
	case exitEvent:
		s.onExit(ev.pid, ev.status)
	case timerEvent:
		if s.services[ev.name] == ev.svc && ev.svc.timerGen[ev.kind] == ev.gen {
			ev.svc.timers[ev.kind] = nil
			ev.svc.deadlines[ev.kind] = time.Time{}
			s.onTimer(ev.svc, ev.kind)
		}
	case notifyEvent:
		s.onNotify(ev)
	case proxyStatusEvent:
		s.onProxyStatus(ev)
	case proxyKillEvent:
		s.onProxyKill(ev)
	case proxyHeardEvent:
		s.onProxyHeard(ev)
	case lingerEvent:
		s.killLingering(ev.pgid)
	case shutdownEvent:
		s.beginShutdown()
	case funcEvent:
		ev.f()
	}
}

// arm starts (or restarts) one of a service's timers.
func (s *Supervisor) arm(svc *service, kind timerKind, d time.Duration) {
	s.disarm(svc, kind)
	gen := svc.timerGen[kind]
	ev := timerEvent{name: svc.name, svc: svc, kind: kind, gen: gen}
	t := time.AfterFunc(d, func() { s.send(ev) })
	svc.timers[kind] = t.Stop
	svc.deadlines[kind] = time.Now().Add(d)
}

// disarm cancels one of a service's timers.
func (s *Supervisor) disarm(svc *service, kind timerKind) {
	svc.timerGen[kind]++
	svc.deadlines[kind] = time.Time{}
	if stop := svc.timers[kind]; stop != nil {
		stop()
		svc.timers[kind] = nil
	}
}

func (s *Supervisor) logf(level eventlog.Level, format string, args ...any) {
	s.log.Log(level, "cfkd", 0, fmt.Sprintf(format, args...))
}

// fileOf wraps a raw fd cfkd owns.
func fileOf(fd int, name string) *os.File { return os.NewFile(uintptr(fd), name) }

// sortedServices lists services by name.
func (s *Supervisor) sortedServices() []*service {
	out := make([]*service, 0, len(s.services))
	for _, svc := range s.services {
		out = append(out, svc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
