package listener

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The socket activation protocol, sd_listen_fds(3): names as in the C API.
const (
	// sdListenFdsStart is SD_LISTEN_FDS_START, the first passed fd.
	sdListenFdsStart = 3

	envListenPid     = "LISTEN_PID"     // the pid the fds are meant for
	envListenFds     = "LISTEN_FDS"     // how many fds, from sdListenFdsStart on
	envListenFdNames = "LISTEN_FDNAMES" // their names, joined by ':'

	// unknownFdName is what sd_listen_fds_with_names calls an fd passed
	// without LISTEN_FDNAMES.
	unknownFdName = "unknown"
)

// InheritedFile is one fd passed to this process by socket activation.
type InheritedFile struct {
	// Name is the fd's name from LISTEN_FDNAMES ("unknown" without it).
	// systemd gives every socket of one .socket unit the unit's name, or
	// its FileDescriptorName=, so names may repeat.
	Name string
	// File is the fd, close-on-exec, not yet checked to be a listening
	// socket: Adopt does that.
	File *os.File
}

// Inherited takes the fds passed by systemd socket activation (or
// systemd-socket-activate, or any activator speaking sd_listen_fds(3)):
// when LISTEN_PID is this process's pid, LISTEN_FDS fds from fd 3 on,
// named by LISTEN_FDNAMES. It marks them close-on-exec, and unsets the
// three variables whatever it finds, so that they never reach a child.
// With no activation, or one meant for another pid, it returns nothing and
// no error; malformed variables are an error.
func Inherited() ([]InheritedFile, error) {
	pidText, nText, namesText := os.Getenv(envListenPid), os.Getenv(envListenFds), os.Getenv(envListenFdNames)
	for _, k := range []string{envListenPid, envListenFds, envListenFdNames} {
		os.Unsetenv(k)
	}
	if pidText == "" || nText == "" {
		return nil, nil
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("%s='%s' is not a pid", envListenPid, quote(pidText))
	}
	if pid != os.Getpid() {
		// Meant for a parent that exec'd us without cleaning up.
		return nil, nil
	}
	n, err := strconv.Atoi(nText)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("%s='%s' is not a number of fds", envListenFds, quote(nText))
	}
	if n == 0 {
		return nil, nil
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && uint64(n) > lim.Cur {
		return nil, fmt.Errorf("%s=%d is more fds than this process may hold", envListenFds, n)
	}
	names := make([]string, n)
	if namesText == "" {
		for i := range names {
			names[i] = unknownFdName
		}
	} else {
		names = strings.Split(namesText, ":")
		if len(names) != n {
			return nil, fmt.Errorf("%s has %d names but %s is %d", envListenFdNames, len(names), envListenFds, n)
		}
	}
	for i := range n {
		fd := sdListenFdsStart + i
		if err := setCloexec(fd); err != nil {
			return nil, fmt.Errorf("%s=%d but fd %d is not open", envListenFds, n, fd)
		}
	}
	files := make([]InheritedFile, n)
	for i, name := range names {
		fd := sdListenFdsStart + i
		files[i] = InheritedFile{Name: name, File: os.NewFile(uintptr(fd), "inherited:"+name)}
	}
	return files, nil
}

// ListenEnv is the socket activation environment for a child that gets
// the sockets names as fds 3, 4, ...: "LISTEN_FDS=n", "LISTEN_FDNAMES=a:b"
// and, unless pid is 0, "LISTEN_PID=pid". The child's own pid is unknown
// before fork, so cfkd passes 0 and a small exec step in the child adds
// LISTEN_PID. Names must not hold ':' (socket names cannot). No names, no
// environment: nil.
func ListenEnv(names []string, pid int) []string {
	if len(names) == 0 {
		return nil
	}
	env := []string{
		envListenFds + "=" + strconv.Itoa(len(names)),
		envListenFdNames + "=" + strings.Join(names, ":"),
	}
	if pid != 0 {
		env = append(env, envListenPid+"="+strconv.Itoa(pid))
	}
	return env
}

// Adopt takes an inherited listening socket, from Inherited or from a
// previous cfkd, instead of binding spec: it checks that f is a listening
// (SO_ACCEPTCONN) stream socket, TCP or unix, marks it close-on-exec, and
// sets its O_NONBLOCK as spec.Nonblocking says. The socket's real address
// is read from the fd, whatever spec declares. On success Adopt owns f
// and closes it, keeping its own dup of the fd (see the package doc); on
// error f is left open and still the caller's. Close never removes an
// adopted unix socket's path.
func Adopt(spec Spec, f *os.File) (*Socket, error) {
	if f == nil {
		return nil, fmt.Errorf("cannot adopt %s: no file", adoptName(spec, -1))
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("cannot adopt %s: %w", adoptName(spec, -1), err)
	}
	var fd, dup int
	var cerr error
	// Control reads the fd without File.Fd's side effect on blocking mode.
	err = rc.Control(func(raw uintptr) {
		fd = int(raw)
		if cerr = setCloexec(fd); cerr != nil {
			return
		}
		if cerr = checkListening(fd); cerr != nil {
			return
		}
		dup, cerr = unix.FcntlInt(raw, unix.F_DUPFD_CLOEXEC, sdListenFdsStart)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("cannot adopt %s: %w", adoptName(spec, fd), err)
	}
	s, err := newSocket(spec, dup, true)
	if err != nil {
		return nil, fmt.Errorf("cannot adopt %s: %w", adoptName(spec, fd), err)
	}
	f.Close()
	return s, nil
}

var (
	errNotSocket    = errors.New("not a socket")
	errNotStream    = errors.New("not a stream socket")
	errNotListening = errors.New("not a listening socket")
	errNotTCPOrUnix = errors.New("not a TCP or unix socket")
)

// checkListening verifies that fd is a listening TCP or unix stream socket.
func checkListening(fd int) error {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err == unix.ENOTSOCK {
		return errNotSocket
	}
	if err != nil {
		return err
	}
	if typ != unix.SOCK_STREAM {
		return errNotStream
	}
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return err
	}
	switch domain {
	case unix.AF_UNIX:
	case unix.AF_INET, unix.AF_INET6:
		proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
		if err != nil {
			return err
		}
		// Go's net package listens with MPTCP when the kernel has it.
		if proto != unix.IPPROTO_TCP && proto != unix.IPPROTO_MPTCP {
			return errNotTCPOrUnix
		}
	default:
		return errNotTCPOrUnix
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return err
	}
	if acc != 1 {
		return errNotListening
	}
	return nil
}

// adoptName names what Adopt was given, for its errors: "socket 'web'
// (fd 3)".
func adoptName(spec Spec, fd int) string {
	var b strings.Builder
	if spec.Name != "" {
		fmt.Fprintf(&b, "socket '%s'", quote(spec.Name))
	}
	if fd >= 0 {
		if b.Len() > 0 {
			b.WriteString(" (fd " + strconv.Itoa(fd) + ")")
		} else {
			b.WriteString("fd " + strconv.Itoa(fd))
		}
	}
	if b.Len() == 0 {
		return "socket"
	}
	return b.String()
}
