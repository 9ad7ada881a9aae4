package listener

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// somaxconnPath holds the kernel's cap on listen(2) backlogs.
const somaxconnPath = "/proc/sys/net/core/somaxconn"

// Socket is a bound (or adopted) listening socket. cfkd holds it and never
// accepts on it; its fd is what the workers inherit.
type Socket struct {
	spec     Spec
	file     *os.File
	fd       int
	family   int // unix.AF_INET, AF_INET6 or AF_UNIX
	protocol int // unix.IPPROTO_TCP or IPPROTO_MPTCP for inet; 0 for unix
	addr     string
	port     int
	adopted  bool

	// path is the unix socket file Bind created, removed by Close if it
	// is still the inode pathID names; empty for TCP and adopted sockets.
	path   string
	pathID fileID

	closeOnce sync.Once
	closeErr  error
}

// fileID names an inode: a path still holds "our" file if these match.
type fileID struct{ dev, ino uint64 }

// Bind creates the listening socket spec declares: socket(2) with
// SO_REUSEADDR for TCP (IPV6_V6ONLY for an IPv6 host), bind(2), and
// listen(2) with spec.ListenQSize or the kernel's maximum. For a unix
// socket a stale path (nothing accepts on it: connect is refused) is
// removed first, while a live one makes the bind fail with "address
// already in use"; the file then gets spec's Mode, Owner and Group. The fd
// is close-on-exec, and blocking unless spec.Nonblocking.
//
// Errors are one plain sentence with the OS's reason, e.g. "cannot bind
// 127.0.0.1:80: permission denied" or "cannot parse host 'foo bar'"; the
// errno stays reachable with errors.Is.
func Bind(spec Spec) (*Socket, error) {
	a, err := parseAddress(spec.Host, spec.Service)
	if err != nil {
		return nil, err
	}
	var s *Socket
	if a.network == "unix" {
		s, err = bindUnix(spec, a.path)
	} else {
		s, err = bindTCP(spec, a)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot bind %s: %w", a, err)
	}
	return s, nil
}

func bindTCP(spec Spec, a address) (*Socket, error) {
	ip := a.ap.Addr()
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ip.Is4() {
		sa = &unix.SockaddrInet4{Port: int(a.ap.Port()), Addr: ip.As4()}
	} else {
		zone, err := zoneID(ip.Zone())
		if err != nil {
			return nil, err
		}
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(a.ap.Port()), Addr: ip.As16(), ZoneId: zone}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	// A restarted cfkd must rebind a port whose old connections linger in
	// TIME_WAIT.
	err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err == nil && family == unix.AF_INET6 {
		// "::" means IPv6 only, so that 0.0.0.0 can be its own socket.
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if err == nil {
		err = unix.Bind(fd, sa)
	}
	if err == nil {
		err = unix.Listen(fd, backlog(spec.ListenQSize))
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return newSocket(spec, fd, false)
}

func bindUnix(spec Spec, path string) (s *Socket, err error) {
	uid, gid := -1, -1
	if spec.Owner != "" {
		if uid, err = lookupUser(spec.Owner); err != nil {
			return nil, err
		}
	}
	if spec.Group != "" {
		if gid, err = lookupGroup(spec.Group); err != nil {
			return nil, err
		}
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	created, owned := false, true
	defer func() {
		if err != nil {
			if owned {
				unix.Close(fd)
			}
			if created {
				os.Remove(path)
			}
		}
	}()
	if err = removeStale(path); err != nil {
		return nil, err
	}
	if spec.Mode != 0 {
		// Linux creates the path with the socket inode's mode minus the
		// umask, so the file is never more open than Mode; a failure
		// here only widens that window, and the chmod below still runs.
		_ = unix.Fchmod(fd, uint32(spec.Mode.Perm()))
	}
	if err = unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return nil, err
	}
	created = true
	id, err := setFileAttrs(path, spec.Mode, uid, gid)
	if err != nil {
		return nil, err
	}
	// Clients get in only now, with the file's final owner and mode.
	if err = unix.Listen(fd, backlog(spec.ListenQSize)); err != nil {
		return nil, err
	}
	owned = false // newSocket closes fd on error
	s, err = newSocket(spec, fd, false)
	if err != nil {
		return nil, err
	}
	s.path, s.pathID = path, id
	return s, nil
}

// removeStale removes a unix socket file nothing accepts on, as the
// original did, but only that: a live socket, a symlink or any other file
// is left for bind(2) to refuse with EADDRINUSE. (Another process could
// bind the path between the probe and the unlink; no unix socket API
// closes that race.)
func removeStale(path string) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil
	}
	probe, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(probe)
	// A live listener answers, or is full (EAGAIN); a dead one refuses.
	switch err := unix.Connect(probe, &unix.SockaddrUnix{Name: path}); err {
	case unix.ECONNREFUSED:
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return errors.Unwrap(err)
		}
		return nil
	case unix.ENOENT:
		return nil
	case nil, unix.EAGAIN, unix.EINPROGRESS:
		return unix.EADDRINUSE
	default:
		// EACCES and the like: we cannot tell, so we do not remove.
		return unix.EADDRINUSE
	}
}

// setFileAttrs gives the socket file bind(2) just made its owner, group
// and mode, through an O_PATH handle on that inode, so that a path swapped
// for a symlink in a shared directory cannot redirect a chmod run as root.
// Ownership goes first, so the bits chmod adds back are the final owner's.
func setFileAttrs(path string, mode os.FileMode, uid, gid int) (fileID, error) {
	h, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fileID{}, err
	}
	defer unix.Close(h)
	var st unix.Stat_t
	if err := unix.Fstat(h, &st); err != nil {
		return fileID{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fileID{}, errors.New("the path was replaced while binding")
	}
	if uid != -1 || gid != -1 {
		if err := unix.Fchownat(h, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
			return fileID{}, fmt.Errorf("cannot set owner: %w", err)
		}
	}
	if mode != 0 {
		// chmod through /proc/self/fd follows the handle to the inode;
		// without /proc, fchmodat2 (Linux 6.6) takes the handle itself.
		err := unix.Chmod("/proc/self/fd/"+strconv.Itoa(h), uint32(mode.Perm()))
		if err == unix.ENOENT {
			err = unix.Fchmodat(h, "", uint32(mode.Perm()), unix.AT_EMPTY_PATH)
		}
		if err != nil {
			return fileID{}, fmt.Errorf("cannot set mode: %w", err)
		}
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// newSocket wraps a listening fd that is ours; on error fd is closed.
func newSocket(spec Spec, fd int, adopted bool) (*Socket, error) {
	addr, port, family, err := localAddr(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	f, err := wrapFd(fd, fileName(spec.Name, addr), spec.Nonblocking)
	if err != nil {
		if f != nil {
			f.Close()
		} else {
			unix.Close(fd)
		}
		return nil, err
	}
	protocol := 0
	if family != unix.AF_UNIX {
		if protocol, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil {
			f.Close()
			return nil, err
		}
	}
	return &Socket{spec: spec, file: f, fd: fd, family: family, protocol: protocol,
		addr: addr, port: port, adopted: adopted}, nil
}

// fileName is the name of a socket's *os.File, as it shows in errors and
// as what crosses a process boundary: "socket:web:127.0.0.1:8080".
func fileName(name, addr string) string {
	return "socket:" + name + ":" + addr
}

// backlog is the listen(2) backlog for a declared listen_qsize.
func backlog(qsize int) int {
	if qsize > 0 {
		return qsize
	}
	return somaxconn()
}

// somaxconn is the kernel's largest backlog (net.core.somaxconn), the
// default; listen(2) silently caps any larger one to it.
func somaxconn() int {
	b, err := os.ReadFile(somaxconnPath)
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			return n
		}
	}
	return unix.SOMAXCONN
}

// Fd is the listening fd, to place in a child's fd table (stdin or 3...).
// It stays valid until Close.
func (s *Socket) Fd() int { return s.fd }

// File is the listening socket as an *os.File; Close closes it. Its Fd
// never changes the socket's blocking mode.
func (s *Socket) File() *os.File { return s.file }

// Addr is the real address, known after bind: "127.0.0.1:43817",
// "[::1]:8080" or "unix:/tmp/x.sock".
func (s *Socket) Addr() string { return s.addr }

// Port is the real TCP port (the one the kernel chose for service 0); 0
// for a unix socket.
func (s *Socket) Port() int { return s.port }

// Spec is the declaration the socket was bound or adopted with.
func (s *Socket) Spec() Spec { return s.spec }

// Adopted reports whether the socket was inherited (Adopt) rather than
// bound by this process.
func (s *Socket) Adopted() bool { return s.adopted }

// Close closes the listening fd (workers that inherited it keep theirs)
// and removes the unix socket file if Bind created it and it is still
// that file. An adopted socket's path is never removed: it belongs to
// whoever bound it. Close may be called more than once.
func (s *Socket) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.file.Close()
		if s.path == "" || s.adopted {
			return
		}
		var st unix.Stat_t
		if unix.Lstat(s.path, &st) != nil || (fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}) != s.pathID {
			return
		}
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) && s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

// Handover is what a Socket needs to outlive an in-place upgrade of cfkd:
// the fd itself crosses exec (same number, close-on-exec cleared by the
// caller), the rest is data.
type Handover struct {
	Fd      int    `json:"fd"`
	Adopted bool   `json:"adopted"`
	Path    string `json:"path,omitempty"`
	PathDev uint64 `json:"path_dev,omitempty"`
	PathIno uint64 `json:"path_ino,omitempty"`
}

// Handover describes s for the next cfkd.
func (s *Socket) Handover() Handover {
	return Handover{Fd: s.fd, Adopted: s.adopted, Path: s.path, PathDev: s.pathID.dev, PathIno: s.pathID.ino}
}

// Resume takes back a socket handed over by a previous cfkd: the same fd,
// still bound and listening, with its unix path still its own to remove.
// The fd is marked close-on-exec again.
func Resume(spec Spec, h Handover) (*Socket, error) {
	if err := setCloexec(h.Fd); err != nil {
		return nil, fmt.Errorf("cannot resume socket '%s' (fd %d): %w", spec.Name, h.Fd, err)
	}
	if err := checkListening(h.Fd); err != nil {
		return nil, fmt.Errorf("cannot resume socket '%s' (fd %d): %w", spec.Name, h.Fd, err)
	}
	// O_NONBLOCK belongs to the description the workers share, and Go
	// workers set it themselves: leave it exactly as it is.
	now, err := isNonblocking(h.Fd)
	if err != nil {
		return nil, fmt.Errorf("cannot resume socket '%s': %w", spec.Name, err)
	}
	as := spec
	as.Nonblocking = now
	s, err := newSocket(as, h.Fd, h.Adopted)
	if err != nil {
		return nil, fmt.Errorf("cannot resume socket '%s': %w", spec.Name, err)
	}
	s.spec = spec
	s.path, s.pathID = h.Path, fileID{dev: h.PathDev, ino: h.PathIno}
	return s, nil
}
