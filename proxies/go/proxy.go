package cfkproxy

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Shutdown timing (on TERM, INT, HUP, or EOF on the command pipe).
const (
	// stopWait is how long the workers have to exit after TERM before
	// the proxy kills what is left of their groups.
	stopWait = 5 * time.Second
	// killWait is how long the proxy then waits to reap and report them.
	killWait = time.Second
	// flushWait bounds the last writes of statuses and log lines to cfkd.
	flushWait = 2 * time.Second
)

// maxCommandBytes bounds one command line from cfkd; a longer one is
// skipped with an error log line.
const maxCommandBytes = 1 << 20

// proxy is the state of proxy mode. Only the loop goroutine touches
// workers and byPid; the writers are safe for any goroutine.
type proxy struct {
	argv    []string       // the proxy's own argv, which every worker gets too
	env     []string       // what every worker inherits
	sockets map[string]int // _CFK_SOCK_<name> → fd
	devNull int
	shared  *os.File // the sealed memfd
	status  *pipeWriter
	log     *pipeWriter

	workers map[string]*worker
	byPid   map[int]*worker
}

// commandLine is one line read from cfkd, or why it could not be read.
type commandLine struct {
	line []byte
	err  error
}

// exitEvent is one reaped child.
type exitEvent struct {
	pid    int
	status syscall.WaitStatus
}

// runProxy is proxy mode: it returns the process's exit code.
func runProxy(app App) int {
	p, cmdFile, err := newProxy()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cfkproxy: %v\n", err)
		return 1
	}
	start := time.Now()
	shared, size, err := buildShared(app.Preload)
	if err != nil {
		p.logf(logErr, proxyService, "%v", err)
		fmt.Fprintf(os.Stderr, "cfkproxy: %v\n", err)
		p.log.flush(time.Now().Add(flushWait))
		return 1
	}
	p.shared = shared
	// Whatever Preload allocated to build the state is garbage now; give
	// it back, since the proxy lives as long as its workers.
	debug.FreeOSMemory()
	p.logf(logOut, proxyService, "preloaded %d bytes of shared memory in %v", size, time.Since(start).Round(time.Millisecond))

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	exits := make(chan exitEvent, 64)
	stopReaper := startReaper(exits)
	defer stopReaper()
	cmds := make(chan commandLine, 16)
	go readCommands(cmdFile, cmds)

	p.loop(cmds, exits, sigs)

	deadline := time.Now().Add(flushWait)
	p.status.flush(deadline)
	p.log.flush(deadline)
	return 0
}

// newProxy adopts what cfkd passed: the three pipes and the sockets.
func newProxy() (*proxy, *os.File, error) {
	fdOf := func(name string) (int, error) {
		v := os.Getenv(name)
		if v == "" {
			return -1, fmt.Errorf("%s is not set: a proxy is started by cfkd (proxy NAME cmd=...)", name)
		}
		fd, err := strconv.Atoi(v)
		if err != nil || fd < 0 {
			return -1, fmt.Errorf("%s=%q is not an fd number", name, v)
		}
		return fd, nil
	}
	cmdFd, err := fdOf(envCommandFd)
	if err != nil {
		return nil, nil, err
	}
	statusFd, err := fdOf(envStatusFd)
	if err != nil {
		return nil, nil, err
	}
	logFd, err := fdOf(envLogFd)
	if err != nil {
		return nil, nil, err
	}
	// Whatever else the proxy inherited must not reach a worker; the
	// workers get only what plan places for them.
	if err := closeInheritedOnExec(); err != nil {
		return nil, nil, err
	}
	p := &proxy{
		argv:    os.Args,
		env:     workerEnv(os.Environ()),
		sockets: map[string]int{},
		workers: map[string]*worker{},
		byPid:   map[int]*worker{},
	}
	if p.status, err = newPipeWriter(statusFd, "status pipe", 0); err != nil {
		return nil, nil, err
	}
	if p.log, err = newPipeWriter(logFd, "log pipe", maxLogQueueBytes); err != nil {
		return nil, nil, err
	}
	if err := checkFd(cmdFd); err != nil {
		return nil, nil, fmt.Errorf("command pipe: %w", err)
	}
	if err := unix.SetNonblock(cmdFd, true); err != nil {
		return nil, nil, fmt.Errorf("command pipe: %w", err)
	}
	cmdFile := os.NewFile(uintptr(cmdFd), "command pipe")
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		name, ok := strings.CutPrefix(k, envSockPrefix)
		if !ok || name == "" {
			continue
		}
		fd, err := strconv.Atoi(v)
		if err != nil || checkFd(fd) != nil {
			p.logf(logErr, proxyService, "socket %s: %s=%q is not an open fd", name, k, v)
			continue
		}
		p.sockets[name] = fd
	}
	if p.devNull, err = unix.Open(os.DevNull, unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	return p, cmdFile, nil
}

// loop serves commands until a signal or EOF on the command pipe, then
// stops every worker and returns once all are reported or killWait after
// the KILLs.
func (p *proxy) loop(cmds <-chan commandLine, exits <-chan exitEvent, sigs <-chan os.Signal) {
	const (
		serving = iota
		stopping
		killing
	)
	phase := serving
	var timer <-chan time.Time
	shutdown := func(why string) {
		switch phase {
		case serving:
			p.logf(logOut, proxyService, "%s: stopping %d services", why, len(p.workers))
			p.signalAll(syscall.SIGTERM)
			phase, timer = stopping, time.After(stopWait)
		case stopping:
			p.logf(logOut, proxyService, "%s again: killing %d services", why, len(p.workers))
			p.signalAll(syscall.SIGKILL)
			phase, timer = killing, time.After(killWait)
		}
	}
	for phase == serving || len(p.workers) > 0 {
		select {
		case c, ok := <-cmds:
			if !ok {
				cmds = nil
				shutdown("command pipe closed")
				continue
			}
			if phase != serving {
				p.logf(logErr, proxyService, "shutting down: ignored command %s", oneLine(string(c.line)))
				continue
			}
			p.command(c)
		case e := <-exits:
			p.exited(e)
		case s := <-sigs:
			shutdown("received " + unix.SignalName(s.(syscall.Signal)))
		case <-timer:
			if phase == stopping {
				p.logf(logErr, proxyService, "%d services still up %v after TERM: killing them", len(p.workers), stopWait)
				p.signalAll(syscall.SIGKILL)
				phase, timer = killing, time.After(killWait)
				continue
			}
			for _, w := range p.workers {
				p.logf(logErr, proxyService, "%s (pid %d) not reaped after KILL", w.name, w.pid)
			}
			return
		}
	}
}

func (p *proxy) command(c commandLine) {
	if c.err != nil {
		p.logf(logErr, proxyService, "%v", c.err)
		return
	}
	cmd, err := parseCommand(c.line)
	if err != nil {
		p.logf(logErr, proxyService, "%v", err)
		return
	}
	switch cmd.verb {
	case "start":
		p.start(cmd)
	case "stop":
		p.stop(cmd.name)
	}
}

func (p *proxy) start(c *command) {
	if w, ok := p.workers[c.name]; ok {
		p.logf(logErr, proxyService, "start %s: already running (pid %d)", c.name, w.pid)
		return
	}
	pl, err := p.plan(c)
	var w *worker
	if err == nil {
		w, err = p.spawn(c, pl)
	}
	if err != nil {
		// No process, so no status: cfkd takes only real pids. Its
		// start stays pending, as under a Perl proxy that cannot fork.
		p.logf(logErr, proxyService, "%v", err)
		return
	}
	p.workers[w.name] = w
	p.byPid[w.pid] = w
	p.status.put(startedLine(w.name, w.pid))
	p.logf(logOut, proxyService, "started %s (pid %d)", w.name, w.pid)
}

func (p *proxy) stop(name string) {
	w, ok := p.workers[name]
	if !ok {
		p.logf(logErr, proxyService, "stop %s: no such service running in this proxy", name)
		return
	}
	p.logf(logOut, proxyService, "stopping %s (pid %d)", name, w.pid)
	if err := p.signal(w, syscall.SIGTERM); err != nil {
		p.logf(logErr, proxyService, "stop %s: %v", name, err)
	}
}

// signal sends sig to the worker's process group, or to the worker alone
// under no_new_session (its group is the proxy's).
func (p *proxy) signal(w *worker, sig syscall.Signal) error {
	pid := w.pid
	if w.newSession {
		pid = -pid
	}
	return syscall.Kill(pid, sig)
}

func (p *proxy) signalAll(sig syscall.Signal) {
	for _, w := range p.workers {
		if err := p.signal(w, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			p.logf(logErr, proxyService, "%s %s: %v", unix.SignalName(sig), w.name, err)
		}
	}
}

// exited reports a reaped worker to cfkd, exactly once.
func (p *proxy) exited(e exitEvent) {
	w, ok := p.byPid[e.pid]
	if !ok {
		// A child Preload left behind, or one its code started.
		p.logf(logErr, proxyService, "reaped unknown pid %d (wait status %d)", e.pid, int(e.status))
		return
	}
	delete(p.byPid, e.pid)
	delete(p.workers, w.name)
	p.status.put(stoppedLine(w.name, w.pid, int(e.status)))
}

func (p *proxy) logf(typ, service, format string, args ...any) {
	p.log.put(logLine(typ, service, oneLine(fmt.Sprintf(format, args...))))
}

// readCommands sends each line from cfkd to the loop and closes cmds on
// EOF (cfkd is gone) or a read error.
func readCommands(f *os.File, cmds chan<- commandLine) {
	defer close(cmds)
	br := bufio.NewReaderSize(f, 64<<10)
	var long []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if !tooLong {
				long = append(long, chunk...)
				if len(long) > maxCommandBytes {
					tooLong, long = true, nil
				}
			}
			continue
		}
		if len(chunk) > 0 || len(long) > 0 {
			line := append(long, chunk...)
			long = nil
			switch {
			case tooLong:
				cmds <- commandLine{err: fmt.Errorf("command longer than %d bytes skipped", maxCommandBytes)}
			case len(strings.TrimSpace(string(line))) > 0:
				cmds <- commandLine{line: []byte(strings.TrimRight(string(line), "\r\n"))}
			}
			tooLong = false
		}
		if err != nil {
			return
		}
	}
}

// startReaper is the one place that waits for children: on each SIGCHLD
// it reaps, with WNOHANG until none is left (signals coalesce), every
// child that has exited. Nothing in the proxy ever calls cmd.Wait or
// Process.Wait, which would steal these statuses.
func startReaper(exits chan<- exitEvent) (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if errors.Is(err, syscall.EINTR) {
					continue
				}
				if err != nil || pid <= 0 {
					break
				}
				select {
				case exits <- exitEvent{pid: pid, status: ws}:
				case <-quit:
					return
				}
			}
			select {
			case <-sigs:
			case <-quit:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(quit)
		<-done
	}
}

// closeInheritedOnExec marks every fd above stderr close-on-exec: cfkd's
// pipes and sockets, and anything else the proxy inherited, reach a worker
// only where plan places them.
func closeInheritedOnExec() error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		unix.CloseOnExec(fd)
	}
	return nil
}
