package listener

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// QueueStat is a listening socket's accept queue as the kernel sees it.
// When Queued stays near Limit, connections wait (or are dropped) because
// the workers do not accept fast enough: the pool is too small.
type QueueStat struct {
	// Queued is the number of connections established and waiting for
	// accept(2).
	Queued uint32
	// Limit is the most the queue holds: the backlog, capped by
	// net.core.somaxconn.
	Limit uint32
}

// The sock_diag protocol: linux/sock_diag.h, linux/inet_diag.h,
// linux/unix_diag.h, include/net/tcp_states.h.
const (
	tcpListen        = 10         // TCP_LISTEN
	udiagShowRqlen   = 0x10       // UDIAG_SHOW_RQLEN
	unixDiagRqlen    = 4          // UNIX_DIAG_RQLEN, an attribute of unix_diag_msg
	inetDiagNoCookie = ^uint32(0) // INET_DIAG_NOCOOKIE

	sizeofInetDiagReqV2 = 56 // struct inet_diag_req_v2
	sizeofInetDiagMsg   = 72 // struct inet_diag_msg
	sizeofUnixDiagReq   = 24 // struct unix_diag_req
	sizeofUnixDiagMsg   = 16 // struct unix_diag_msg
	sizeofRtattr        = 4  // struct rtattr
)

const (
	// diagTimeout bounds the wait for the kernel's answer, so that a
	// status command can never hang the supervisor.
	diagTimeout = 2 * time.Second
	// diagBufBytes holds one batch of a dump (the kernel sends at most
	// 32 KiB at a time).
	diagBufBytes = 64 << 10
	// diagRetries is how many times a dump the kernel flagged as
	// interrupted (NLM_F_DUMP_INTR) is retried before giving up.
	diagRetries = 3
)

var (
	errNotFound        = errors.New("socket not found by sock_diag (another network namespace?)")
	errDumpInterrupted = errors.New("the kernel's socket list kept changing")
	errMalformed       = errors.New("malformed sock_diag answer")
)

// Queue reports the socket's accept queue now and its limit, from netlink
// sock_diag: for a listening TCP socket inet_diag's idiag_rqueue is the
// accept queue and idiag_wqueue the backlog, for a unix socket
// UNIX_DIAG_RQLEN says the same. The socket is found by its inode. It
// works for TCP (and MPTCP, which Go's net package listens with) over IPv4
// and IPv6 and for unix stream sockets, bound or adopted, in cfkd's
// network namespace.
func (s *Socket) Queue() (QueueStat, error) {
	ino, err := s.inode()
	var q QueueStat
	if err == nil {
		if s.family == unix.AF_UNIX {
			q, err = unixQueue(ino)
		} else {
			q, err = tcpQueue(s.family, s.protocol, ino)
		}
	}
	if err != nil {
		return QueueStat{}, fmt.Errorf("cannot read the accept queue of %s: %w", s.addr, err)
	}
	return q, nil
}

// inode is the socket's inode number, which sock_diag reports.
func (s *Socket) inode() (uint32, error) {
	rc, err := s.file.SyscallConn()
	var st unix.Stat_t
	var serr error
	if err == nil {
		err = rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) })
	}
	if errors.Is(err, os.ErrClosed) {
		return 0, errors.New("the socket is closed")
	}
	if err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	return uint32(st.Ino), nil
}

// tcpQueue dumps the listening TCP sockets of one family (never the
// established ones, of which a web host has many) and picks ours.
func tcpQueue(family, protocol int, ino uint32) (QueueStat, error) {
	req := make([]byte, sizeofInetDiagReqV2)
	req[0] = uint8(family)   // sdiag_family
	req[1] = uint8(protocol) // sdiag_protocol: IPPROTO_TCP or IPPROTO_MPTCP
	// req[2] idiag_ext = 0: no extensions; req[3] pad.
	binary.NativeEndian.PutUint32(req[4:], 1<<tcpListen) // idiag_states
	// req[8:56] id: zero, a dump matches on states only.

	for range diagRetries {
		var q QueueStat
		found := false
		interrupted, err := sockDiag(req, unix.NLM_F_DUMP, func(m []byte) bool {
			if len(m) < sizeofInetDiagMsg {
				return true
			}
			if binary.NativeEndian.Uint32(m[68:]) != ino { // idiag_inode
				return true
			}
			q = QueueStat{
				Queued: binary.NativeEndian.Uint32(m[56:]), // idiag_rqueue
				Limit:  binary.NativeEndian.Uint32(m[60:]), // idiag_wqueue
			}
			found = true
			return false
		})
		switch {
		case err != nil:
			return QueueStat{}, err
		case found:
			return q, nil
		case !interrupted:
			return QueueStat{}, errNotFound
		}
	}
	return QueueStat{}, errDumpInterrupted
}

// unixQueue asks for the one unix socket with our inode: unix_diag looks
// sockets up by inode without a dump.
func unixQueue(ino uint32) (QueueStat, error) {
	req := make([]byte, sizeofUnixDiagReq)
	req[0] = unix.AF_UNIX                                   // sdiag_family
	binary.NativeEndian.PutUint32(req[4:], ^uint32(0))      // udiag_states: any
	binary.NativeEndian.PutUint32(req[8:], ino)             // udiag_ino
	binary.NativeEndian.PutUint32(req[12:], udiagShowRqlen) // udiag_show
	binary.NativeEndian.PutUint32(req[16:], inetDiagNoCookie)
	binary.NativeEndian.PutUint32(req[20:], inetDiagNoCookie)

	var q QueueStat
	found := false
	_, err := sockDiag(req, 0, func(m []byte) bool {
		if len(m) < sizeofUnixDiagMsg || binary.NativeEndian.Uint32(m[4:]) != ino {
			return true
		}
		for a := m[sizeofUnixDiagMsg:]; len(a) >= sizeofRtattr; {
			l := int(binary.NativeEndian.Uint16(a[0:]))
			if l < sizeofRtattr || l > len(a) {
				break
			}
			if binary.NativeEndian.Uint16(a[2:]) == unixDiagRqlen && l >= sizeofRtattr+8 {
				q = QueueStat{
					Queued: binary.NativeEndian.Uint32(a[4:]), // udiag_rqueue
					Limit:  binary.NativeEndian.Uint32(a[8:]), // udiag_wqueue
				}
				found = true
				return false
			}
			a = a[min(align4(l), len(a)):]
		}
		return true
	})
	switch {
	case errors.Is(err, unix.ENOENT):
		return QueueStat{}, errNotFound
	case err != nil:
		return QueueStat{}, err
	case !found:
		return QueueStat{}, errNotFound
	}
	return q, nil
}

// sockDiag sends one SOCK_DIAG_BY_FAMILY request and hands each answer's
// payload to each until it returns false, the dump ends (NLMSG_DONE), or
// a single answer (no NLM_F_MULTI) has been read. interrupted reports that
// the kernel flagged the dump NLM_F_DUMP_INTR: the list changed under it.
func sockDiag(req []byte, flags uint16, each func(payload []byte) bool) (interrupted bool, err error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(diagTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return false, err
	}

	const seq = 1
	msg := make([]byte, unix.NLMSG_HDRLEN+len(req))
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))         // nlmsg_len
	binary.NativeEndian.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY) // nlmsg_type
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|flags) // nlmsg_flags
	binary.NativeEndian.PutUint32(msg[8:], seq)                      // nlmsg_seq
	copy(msg[unix.NLMSG_HDRLEN:], req)                               // nlmsg_pid 0: the kernel fills it
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return false, err
	}

	buf := make([]byte, diagBufBytes)
	for {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return interrupted, errors.New("no answer from the kernel")
		case err != nil:
			return interrupted, err
		}
		if nl, ok := from.(*unix.SockaddrNetlink); !ok || nl.Pid != 0 {
			continue // only the kernel answers
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := binary.NativeEndian.Uint32(b[0:])
			typ := binary.NativeEndian.Uint16(b[4:])
			mflags := binary.NativeEndian.Uint16(b[6:])
			mseq := binary.NativeEndian.Uint32(b[8:])
			if l < unix.NLMSG_HDRLEN || uint64(l) > uint64(len(b)) {
				return interrupted, errMalformed
			}
			payload := b[unix.NLMSG_HDRLEN:l]
			b = b[min(align4(int(l)), len(b)):]
			if mseq != seq {
				continue
			}
			if mflags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch typ {
			case unix.NLMSG_DONE:
				// A dump's end carries the dump's own result.
				if len(payload) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(payload)); e < 0 {
						return interrupted, unix.Errno(-e)
					}
				}
				return interrupted, nil
			case unix.NLMSG_ERROR:
				if len(payload) < 4 {
					return interrupted, errMalformed
				}
				if e := int32(binary.NativeEndian.Uint32(payload)); e < 0 {
					return interrupted, unix.Errno(-e)
				}
				return interrupted, nil // an ack
			case unix.SOCK_DIAG_BY_FAMILY:
				if !each(payload) {
					return interrupted, nil
				}
			}
			if mflags&unix.NLM_F_MULTI == 0 {
				return interrupted, nil
			}
		}
	}
}

// align4 rounds a netlink length up to NLMSG_ALIGNTO (and RTA_ALIGNTO).
func align4(n int) int { return (n + 3) &^ 3 }
