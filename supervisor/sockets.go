package supervisor

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/controlfreak-go/cfk/eventlog"
	"github.com/controlfreak-go/cfk/listener"
)

// socketEntry is a declared socket and, once bound, its listening fd.
type socketEntry struct {
	spec listener.Spec
	sock *listener.Socket // nil while unbound
}

// declareSocket sets a socket attribute, declaring the socket if new.
func (s *Supervisor) declareSocket(name, attr, value string) error {
	e := s.sockets[name]
	if e == nil {
		spec := listener.Spec{Name: name}
		if err := spec.Set(attr, value); err != nil {
			return err
		}
		s.sockets[name] = &socketEntry{spec: spec}
		return nil
	}
	if e.sock != nil {
		return fmt.Errorf("socket '%s' is bound; unbind it before changing it", name)
	}
	return e.spec.Set(attr, value)
}

// bind binds a declared socket, or adopts the fd of that name cfkd
// inherited from systemd.
func (s *Supervisor) bind(name string) (*listener.Socket, error) {
	e := s.sockets[name]
	if e == nil {
		return nil, fmt.Errorf("unknown socket '%s'", name)
	}
	if e.sock != nil {
		return e.sock, nil
	}
	var sock *listener.Socket
	var err error
	if f := s.opts.Inherited[name]; f != nil {
		sock, err = listener.Adopt(e.spec, f)
		if err == nil {
			delete(s.opts.Inherited, name)
		}
	} else {
		sock, err = listener.Bind(e.spec)
	}
	if err != nil {
		return nil, err
	}
	e.sock = sock
	how := "bound"
	if sock.Adopted() {
		how = "adopted from the parent"
	}
	s.logf(eventlog.Info, "'%s' socket is now %s: %s", name, how, sock.Addr())
	return sock, nil
}

// usersOf lists the services that declare a socket, and which of them are up.
func (s *Supervisor) usersOf(name string) (all, up []string) {
	for _, svc := range s.sortedServices() {
		if svc.cfg.usesSocket(name) {
			all = append(all, svc.name)
			if svc.isUp() || svc.state == Backoff {
				up = append(up, svc.name)
			}
		}
	}
	return all, up
}

func (s *Supervisor) cmdBind(args []string, done func([]string, error)) {
	if len(args) != 1 {
		done(nil, errors.New("bind takes one socket name"))
		return
	}
	e := s.sockets[args[0]]
	if e != nil && e.sock != nil {
		done(nil, fmt.Errorf("socket '%s' is already bound", args[0]))
		return
	}
	_, err := s.bind(args[0])
	if err != nil {
		s.logf(eventlog.Error, "cannot bind '%s': %v", args[0], err)
	}
	done(nil, err)
}

func (s *Supervisor) cmdUnbind(args []string, done func([]string, error)) {
	if len(args) != 1 {
		done(nil, errors.New("unbind takes one socket name"))
		return
	}
	name := args[0]
	e := s.sockets[name]
	switch {
	case e == nil:
		done(nil, fmt.Errorf("unknown socket '%s'", name))
		return
	case e.sock == nil:
		done(nil, fmt.Errorf("socket '%s' is not bound", name))
		return
	}
	if _, up := s.usersOf(name); len(up) > 0 {
		done(nil, fmt.Errorf("socket '%s' is in use by %s: stop them first", name, strings.Join(up, ", ")))
		return
	}
	err := e.sock.Close()
	e.sock = nil
	s.logf(eventlog.Info, "'%s' socket unbound", name)
	done(nil, err)
}

// cmdSockets lists every socket: name, address, bound or not, fd, the
// services that use it, and for a bound socket its accept queue now and
// its limit (from sock_diag; empty if the kernel would not say).
func (s *Supervisor) cmdSockets(args []string, done func([]string, error)) {
	names := make([]string, 0, len(s.sockets))
	for name := range s.sockets {
		names = append(names, name)
	}
	sort.Strings(names)
	if len(args) > 0 {
		names = args
	}
	out := make([]string, 0, len(names))
	for _, name := range names {
		e := s.sockets[name]
		if e == nil {
			done(nil, fmt.Errorf("unknown socket '%s'", name))
			return
		}
		all, _ := s.usersOf(name)
		addr, state, fd, queued, limit := declaredAddr(e.spec), "unbound", "", "", ""
		if e.sock != nil {
			addr, state, fd = e.sock.Addr(), "bound", strconv.Itoa(e.sock.Fd())
			if e.sock.Adopted() {
				state = "adopted"
			}
			if q, err := e.sock.Queue(); err == nil {
				queued, limit = strconv.Itoa(int(q.Queued)), strconv.Itoa(int(q.Limit))
			}
		}
		out = append(out, strings.Join([]string{name, addr, state, fd, strings.Join(all, ","), queued, limit}, "\t"))
	}
	done(out, nil)
}

// childSockets resolves the sockets a service's child gets: its stdin and
// its LISTEN_FDS, binding declared sockets that are not bound yet.
func (s *Supervisor) childSockets(svc *service, spec *spawnSpec) error {
	if name := svc.cfg.TieStdinTo; name != "" {
		sock, err := s.socketForStart(name)
		if err != nil {
			return err
		}
		spec.stdin = sock.Fd()
	}
	for _, name := range svc.cfg.Sockets {
		sock, err := s.socketForStart(name)
		if err != nil {
			return err
		}
		spec.listenFds = append(spec.listenFds, sock.Fd())
		spec.listenNames = append(spec.listenNames, name)
	}
	return nil
}

func (s *Supervisor) socketForStart(name string) (*listener.Socket, error) {
	if s.sockets[name] == nil {
		return nil, fmt.Errorf("socket '%s' is unknown", name)
	}
	sock, err := s.bind(name)
	if err != nil {
		return nil, fmt.Errorf("socket '%s' cannot be bound: %v", name, err)
	}
	return sock, nil
}

// closeSockets closes every bound socket (at shutdown).
func (s *Supervisor) closeSockets() {
	for name, e := range s.sockets {
		if e.sock != nil {
			if err := e.sock.Close(); err != nil {
				s.logf(eventlog.Error, "close socket '%s': %v", name, err)
			}
			e.sock = nil
		}
	}
	for _, f := range s.opts.Inherited {
		f.Close()
	}
}

// declaredAddr shows where an unbound socket will listen.
func declaredAddr(spec listener.Spec) string {
	network, addr, err := listener.ParseAddress(spec.Host, spec.Service)
	if err != nil {
		return spec.Host + ":" + spec.Service
	}
	if network == "unix" {
		return "unix:" + addr
	}
	return addr
}
