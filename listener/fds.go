package listener

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// setCloexec marks fd close-on-exec (FD_CLOEXEC is the only fd flag).
func setCloexec(fd int) error {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
	return err
}

// isNonblocking reports whether O_NONBLOCK is set on fd's file description.
func isNonblocking(fd int) (bool, error) {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return false, err
	}
	return fl&unix.O_NONBLOCK != 0, nil
}

// wrapFd gives a listening fd its *os.File and its O_NONBLOCK. The file is
// made while the fd is blocking when that is possible, because os.NewFile
// registers a non-blocking fd with Go's poller, which would then wake cfkd
// for every connection meant for the workers. An fd that is already
// non-blocking and must stay so is wrapped as it is: flipping the flag
// would change it under workers that may be accepting on it right now.
func wrapFd(fd int, name string, nonblocking bool) (*os.File, error) {
	was, err := isNonblocking(fd)
	if err != nil {
		return nil, err
	}
	if was && !nonblocking {
		if err := unix.SetNonblock(fd, false); err != nil {
			return nil, err
		}
	}
	f := os.NewFile(uintptr(fd), name)
	if nonblocking && !was {
		if err := unix.SetNonblock(fd, true); err != nil {
			// The File owns fd now; the caller closes it.
			return f, err
		}
	}
	return f, nil
}

// localAddr reads a socket's bound address: the text operators see
// ("127.0.0.1:43817", "[::1]:8080", "unix:/tmp/x.sock"), the port (0 for
// unix) and the address family.
func localAddr(fd int) (addr string, port int, family int, err error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "", 0, 0, err
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		ap := netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
		return ap.String(), sa.Port, unix.AF_INET, nil
	case *unix.SockaddrInet6:
		ip := netip.AddrFrom16(sa.Addr)
		if sa.ZoneId != 0 {
			ip = ip.WithZone(zoneName(sa.ZoneId))
		}
		return netip.AddrPortFrom(ip, uint16(sa.Port)).String(), sa.Port, unix.AF_INET6, nil
	case *unix.SockaddrUnix:
		return "unix:" + sa.Name, 0, unix.AF_UNIX, nil
	}
	return "", 0, 0, fmt.Errorf("unsupported address family")
}

// zoneName is the interface name of an IPv6 scope id, or its number.
func zoneName(id uint32) string {
	if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
		return ifi.Name
	}
	return strconv.FormatUint(uint64(id), 10)
}

// zoneID is the scope id of an IPv6 zone: an interface name or a number.
func zoneID(zone string) (uint32, error) {
	if zone == "" {
		return 0, nil
	}
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n), nil
	}
	ifi, err := net.InterfaceByName(zone)
	if err != nil {
		return 0, fmt.Errorf("unknown interface '%s'", quote(zone))
	}
	return uint32(ifi.Index), nil
}
