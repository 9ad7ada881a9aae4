package supervisor

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/controlfreak-go/cfk/eventlog"
)

// Readiness and watchdogs speak systemd's sd_notify protocol: every
// service gets NOTIFY_SOCKET, the path of one datagram socket cfkd reads,
// and sends lines like READY=1 or WATCHDOG=1 to it. The kernel stamps each
// datagram with the sender's pid (SO_PASSCRED), which is how cfkd knows
// which service spoke: its main pid, or any process of its process group.
// Unmodified clients (go-systemd's daemon.SdNotify, gunicorn, sd_notify(3))
// work as they do under systemd.

// maxNotifyBytes bounds one notification datagram.
const maxNotifyBytes = 4096

// notifyEvent is one datagram: who sent it and what it says.
type notifyEvent struct {
	pid    int
	fields map[string]string
}

// notifier is cfkd's notify socket. It is read through Go's poller, so
// that an in-place upgrade can stop the reader (a read deadline) without
// closing the socket.
type notifier struct {
	path string
	conn *net.UnixConn
	done chan struct{}
}

func openNotifier(path string) (*notifier, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	_ = os.Remove(path)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("notify socket %s: %w", path, err)
	}
	// Services may run as other users: anyone may notify, and the pid the
	// kernel vouches for decides which service it was.
	_ = os.Chmod(path, 0o666)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("notify socket: SO_PASSCRED: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	return notifierFromFd(path, fd)
}

// notifierFromFd wraps a bound notify socket (new, or handed over).
func notifierFromFd(path string, fd int) (*notifier, error) {
	f := os.NewFile(uintptr(fd), "notify:"+path)
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("notify socket: fd %d is not a unix socket", fd)
	}
	return &notifier{path: path, conn: uc}, nil
}

// detach stops the reader and hands back the socket's fd, still bound.
func (n *notifier) detach() (int, error) {
	_ = n.conn.SetReadDeadline(time.Now())
	if n.done != nil {
		<-n.done
	}
	f, err := n.conn.File()
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n.conn.Close()
	return unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 3)
}

// read receives datagrams and hands them to deliver until the socket is
// closed. Datagrams without credentials are dropped.
func (n *notifier) start(deliver func(notifyEvent) bool) {
	n.done = make(chan struct{})
	go func() {
		defer close(n.done)
		n.read(deliver)
	}()
}

func (n *notifier) read(deliver func(notifyEvent) bool) {
	buf := make([]byte, maxNotifyBytes)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		nb, noob, _, _, err := n.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:noob])
		if err != nil || len(msgs) == 0 {
			continue
		}
		cred, err := unix.ParseUnixCredentials(&msgs[0])
		if err != nil || cred.Pid <= 0 {
			continue
		}
		fields := map[string]string{}
		for _, l := range bytes.Split(buf[:nb], []byte{'\n'}) {
			if k, v, ok := bytes.Cut(l, []byte{'='}); ok && len(k) > 0 {
				fields[string(k)] = string(v)
			}
		}
		if !deliver(notifyEvent{pid: int(cred.Pid), fields: fields}) {
			return
		}
	}
}

func (n *notifier) close() {
	n.conn.Close()
	if n.done != nil {
		<-n.done
	}
	_ = os.Remove(n.path)
}

// notifyEnv is what a service needs to notify cfkd.
func (s *Supervisor) notifyEnv(svc *service) []string {
	if s.notify == nil {
		return nil
	}
	env := []string{"NOTIFY_SOCKET=" + s.notify.path}
	if svc.cfg.Watchdog > 0 {
		env = append(env, "WATCHDOG_USEC="+strconv.FormatInt(svc.cfg.Watchdog.Microseconds(), 10))
	}
	return env
}

// notifySender finds the service a pid belongs to: its main pid, or a
// member of its process group.
func (s *Supervisor) notifySender(pid int) *service {
	if svc := s.byPid[pid]; svc != nil {
		return svc
	}
	pgid, err := syscall.Getpgid(pid)
	if err != nil {
		return nil
	}
	for _, svc := range s.services {
		if svc.pgid != 0 && svc.pgid == pgid && svc.isUp() {
			return svc
		}
	}
	return nil
}

func (s *Supervisor) onNotify(ev notifyEvent) {
	svc := s.notifySender(ev.pid)
	if svc == nil {
		s.logf(eventlog.Debug, "notification from pid %d, which is no service's", ev.pid)
		return
	}
	f := ev.fields
	if st, ok := f["STATUS"]; ok {
		svc.notifyStatus = oneLine(st)
	}
	if f["STOPPING"] == "1" {
		svc.notifyStatus = strings.TrimSpace("stopping " + svc.notifyStatus)
	}
	if f["RELOADING"] == "1" {
		svc.reloading = true
	}
	if mp, ok := f["MAINPID"]; ok {
		s.setMainPid(svc, mp)
	}
	if f["READY=1"] != "" || f["READY"] == "1" {
		svc.reloading = false
		if !svc.ready {
			svc.ready = true
			s.logf(eventlog.Info, "%s is ready", svc.name)
		}
		if svc.state == Starting && svc.cfg.Ready == readyNotify {
			s.disarm(svc, startTimer)
			svc.state = Running
			svc.backoffRetry = 0
			s.startSettled(svc, true)
		}
	}
	if f["WATCHDOG"] == "1" && svc.cfg.Watchdog > 0 && svc.isUp() {
		s.arm(svc, watchdogTimer, svc.cfg.Watchdog)
	}
}

// setMainPid follows a service whose main process changed (MAINPID=), as
// long as the new one is in its process group.
func (s *Supervisor) setMainPid(svc *service, v string) {
	pid, err := strconv.Atoi(v)
	if err != nil || pid <= 1 || pid == svc.pid {
		return
	}
	if pgid, err := syscall.Getpgid(pid); err != nil || svc.pgid == 0 || pgid != svc.pgid {
		s.logf(eventlog.Warn, "%s: MAINPID=%d is not in its process group; ignored", svc.name, pid)
		return
	}
	delete(s.byPid, svc.pid)
	s.logf(eventlog.Info, "%s: main pid is now %d (was %d)", svc.name, pid, svc.pid)
	svc.pid = pid
	s.byPid[pid] = svc
}

// killForReason ends a service's process because cfkd gave up on it (not
// ready in time, watchdog silent); the reason outlives the KILL's exit.
func (s *Supervisor) killForReason(svc *service, reason string) {
	s.logf(eventlog.Error, "%s: %s; killing it", svc.name, reason)
	svc.pendingReason = reason
	s.signal(svc, syscall.SIGKILL)
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' || r == 0 {
			return ' '
		}
		return r
	}, s)
}
