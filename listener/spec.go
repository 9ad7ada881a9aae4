package listener

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"regexp"
	"strconv"
	"strings"
)

// DefaultHost is where a TCP socket listens when no host is declared:
// loopback, so that nothing is exposed that the operator did not ask for.
const DefaultHost = "127.0.0.1"

// unixHost is the original's host word for a unix socket (AnyEvent's).
const unixHost = "unix/"

// maxUnixPathBytes is the longest path bind(2) takes: sun_path holds 108
// bytes, the last one the terminating NUL.
const maxUnixPathBytes = 107

// maxQuotedBytes bounds how much of a bad value an error message echoes.
const maxQuotedBytes = 80

// errInvalidValue is the original's answer to a value an attribute refuses.
var errInvalidValue = errors.New("invalid value")

// Spec is a declared socket: plain data, copyable. The zero value (plus a
// Name) is a socket with every attribute at its default.
type Spec struct {
	// Name is the socket's name in the language (`socket NAME ...`).
	Name string
	// Host is "127.0.0.1", "0.0.0.0", "::", "[::1]", "localhost" or
	// "unix/" (see the package doc); empty means DefaultHost for TCP.
	Host string
	// Service is a port number, a service name from /etc/services
	// ("http"), "0" for any free port, or the path of a unix socket (an
	// absolute path implies a unix socket).
	Service string
	// ListenQSize is the listen(2) backlog; 0 means the default, the
	// kernel's maximum (net.core.somaxconn), read at bind time.
	ListenQSize int
	// Nonblocking puts O_NONBLOCK on the listening fd the children share.
	Nonblocking bool
	// Mode is the unix socket file's permission bits; 0 leaves them as
	// the umask made them. Ignored for TCP.
	Mode os.FileMode
	// Owner and Group own the unix socket file, by name or numeric id;
	// empty leaves cfkd's own. Ignored for TCP.
	Owner, Group string
}

// attribute is one row of the socket attribute table: how to set it from
// the language's text, and how an empty value unsets it.
type attribute struct {
	set   func(s *Spec, v string) error
	unset func(s *Spec)
}

// attributes is the one table of socket attributes (SPEC 1.3).
var attributes = map[string]attribute{
	"host": {
		set: func(s *Spec, v string) error {
			if _, _, err := parseHost(v); err != nil {
				return errInvalidValue
			}
			s.Host = v
			return nil
		},
		unset: func(s *Spec) { s.Host = "" },
	},
	"service": {
		set: func(s *Spec, v string) error {
			if _, _, err := parseService(v); err != nil {
				return errInvalidValue
			}
			s.Service = v
			return nil
		},
		unset: func(s *Spec) { s.Service = "" },
	},
	"listen_qsize": {
		set: func(s *Spec, v string) error {
			// "max" is the kernel's maximum, which is also the default:
			// both are 0 here and somaxconn is read at bind time.
			if strings.EqualFold(v, "max") {
				s.ListenQSize = 0
				return nil
			}
			n, err := strconv.ParseUint(v, 10, 31)
			if err != nil {
				return errInvalidValue
			}
			s.ListenQSize = int(n)
			return nil
		},
		unset: func(s *Spec) { s.ListenQSize = 0 },
	},
	"nonblocking": {
		set: func(s *Spec, v string) error {
			b, err := parseBool(v)
			if err != nil {
				return err
			}
			s.Nonblocking = b
			return nil
		},
		unset: func(s *Spec) { s.Nonblocking = false },
	},
	"mode": {
		set: func(s *Spec, v string) error {
			m, err := parseMode(v)
			if err != nil {
				return err
			}
			s.Mode = m
			return nil
		},
		unset: func(s *Spec) { s.Mode = 0 },
	},
	"owner": {
		set: func(s *Spec, v string) error {
			if _, err := lookupUser(v); err != nil {
				return errInvalidValue
			}
			s.Owner = v
			return nil
		},
		unset: func(s *Spec) { s.Owner = "" },
	},
	"group": {
		set: func(s *Spec, v string) error {
			if _, err := lookupGroup(v); err != nil {
				return errInvalidValue
			}
			s.Group = v
			return nil
		},
		unset: func(s *Spec) { s.Group = "" },
	},
}

// Set sets the socket attribute attr (host, service, listen_qsize,
// nonblocking, mode, owner, group) from its text in the language; an empty
// value unsets it, back to its default. Errors are the original's:
// `invalid property 'X'` for an unknown attribute and `invalid value` for
// a value it refuses; the Spec is unchanged on error. Values are checked
// on their own here; whether host and service go together is checked by
// ParseAddress, at bind time.
func (s *Spec) Set(attr, value string) error {
	a, ok := attributes[attr]
	if !ok {
		return fmt.Errorf("invalid property '%s'", quote(attr))
	}
	value = strings.TrimSpace(value)
	if value == "" {
		a.unset(s)
		return nil
	}
	return a.set(s, value)
}

// Attributes lists the attribute names Set takes, sorted.
func Attributes() []string {
	return []string{"group", "host", "listen_qsize", "mode", "nonblocking", "owner", "service"}
}

// Network is "unix" when the spec declares a unix socket (host "unix/",
// or no host and an absolute path as service) and "tcp" otherwise.
func (s Spec) Network() string {
	if isUnixHost(s.Host) || (s.Host == "" && strings.HasPrefix(s.Service, "/")) {
		return "unix"
	}
	return "tcp"
}

// ParseAddress turns a socket's host and service into what bind(2) takes:
// network "tcp" with address "127.0.0.1:80" or "[::1]:8080" (a named
// service resolved through /etc/services), or network "unix" with the
// socket's path. It does no DNS and touches no socket. Errors are one
// plain sentence, e.g. "cannot parse host 'foo bar'".
func ParseAddress(host, service string) (network, address string, err error) {
	a, err := parseAddress(host, service)
	if err != nil {
		return "", "", err
	}
	if a.network == "unix" {
		return a.network, a.path, nil
	}
	return a.network, a.ap.String(), nil
}

// address is a parsed socket address.
type address struct {
	network string         // "tcp" or "unix"
	ap      netip.AddrPort // for tcp
	path    string         // for unix
}

// String is the address as operators see it: "127.0.0.1:80",
// "[::1]:8080" or "unix:/run/x.sock".
func (a address) String() string {
	if a.network == "unix" {
		return "unix:" + a.path
	}
	return a.ap.String()
}

func parseAddress(host, service string) (address, error) {
	ip, isUnix, err := parseHost(host)
	if err != nil {
		return address{}, err
	}
	isPath := strings.HasPrefix(service, "/")
	switch {
	case isUnix && !isPath:
		if service == "" {
			return address{}, errors.New("no unix socket path given")
		}
		return address{}, fmt.Errorf("host unix/ needs an absolute path as service, not '%s'", quote(service))
	case isPath && host != "" && !isUnix:
		return address{}, fmt.Errorf("host %s cannot take the unix path '%s'", quote(host), quote(service))
	}
	port, path, err := parseService(service)
	if err != nil {
		return address{}, err
	}
	if isPath {
		return address{network: "unix", path: path}, nil
	}
	return address{network: "tcp", ap: netip.AddrPortFrom(ip, port)}, nil
}

var defaultHostAddr = netip.MustParseAddr(DefaultHost)

// zoneRe is what we take as an IPv6 zone: an interface name or index.
var zoneRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// parseHost reads a host: an IP address, "localhost", "unix/" (isUnix), or
// nothing (DefaultHost).
func parseHost(host string) (ip netip.Addr, isUnix bool, err error) {
	switch {
	case host == "":
		return defaultHostAddr, false, nil
	case isUnixHost(host):
		return netip.Addr{}, true, nil
	case strings.EqualFold(host, "localhost"):
		return defaultHostAddr, false, nil
	}
	bad := fmt.Errorf("cannot parse host '%s'", quote(host))
	h, bracketed := strings.CutPrefix(host, "[")
	if bracketed {
		var ok bool
		if h, ok = strings.CutSuffix(h, "]"); !ok {
			return netip.Addr{}, false, bad
		}
	}
	ip, err = netip.ParseAddr(h)
	if err != nil || (bracketed && !ip.Is6()) {
		return netip.Addr{}, false, bad
	}
	if z := ip.Zone(); z != "" && !zoneRe.MatchString(z) {
		return netip.Addr{}, false, bad
	}
	if ip.Is4In6() && ip.Zone() == "" {
		ip = ip.Unmap()
	}
	return ip, false, nil
}

func isUnixHost(host string) bool { return strings.EqualFold(host, unixHost) }

// serviceNameRe is the shape of a name in /etc/services ("http",
// "http-alt", "3com-tsmux", "z39.50").
var serviceNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)

// parseService reads a service: an absolute path (a unix socket), a port
// number, or a service name looked up in /etc/services for tcp.
func parseService(service string) (port uint16, path string, err error) {
	switch {
	case service == "":
		return 0, "", errors.New("no service given (a port, a service name or a unix socket path)")
	case strings.HasPrefix(service, "/"):
		if len(service) > maxUnixPathBytes {
			return 0, "", fmt.Errorf("unix socket path '%s' is too long (%d bytes, at most %d)",
				quote(service), len(service), maxUnixPathBytes)
		}
		if strings.ContainsFunc(service, isControl) {
			return 0, "", fmt.Errorf("cannot parse unix socket path '%s'", quote(service))
		}
		return 0, service, nil
	case strings.Trim(service, "0123456789") == "":
		n, err := strconv.ParseUint(service, 10, 16)
		if err != nil {
			return 0, "", fmt.Errorf("port %s is out of range", quote(service))
		}
		return uint16(n), "", nil
	case !serviceNameRe.MatchString(service):
		return 0, "", fmt.Errorf("cannot parse service '%s'", quote(service))
	}
	// getservbyname(3), as the original did: /etc/services, for tcp.
	n, err := net.LookupPort("tcp", service)
	if err != nil || n < 0 || n > 65535 {
		return 0, "", fmt.Errorf("unknown service '%s'", quote(service))
	}
	return uint16(n), "", nil
}

// parseBool accepts exactly the original's words, in any case:
// 1/true/on/enabled/yes and 0/false/off/disabled/no.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "true", "on", "enabled", "yes":
		return true, nil
	case "0", "false", "off", "disabled", "no":
		return false, nil
	}
	return false, errInvalidValue
}

// parseMode reads permission bits in octal, as chmod(1) does: "0660",
// "660". Special bits (setuid, sticky) mean nothing on a socket.
func parseMode(v string) (os.FileMode, error) {
	if len(v) > 4 || strings.Trim(v, "01234567") != "" {
		return 0, errInvalidValue
	}
	m, err := strconv.ParseUint(v, 8, 32)
	if err != nil || m > 0o777 {
		return 0, errInvalidValue
	}
	return os.FileMode(m), nil
}

// lookupUser resolves an owner: a numeric uid as is, or a user name.
func lookupUser(v string) (int, error) {
	if id, ok := numericID(v); ok {
		return id, nil
	}
	u, err := user.Lookup(v)
	if err != nil {
		return 0, fmt.Errorf("unknown user '%s'", quote(v))
	}
	return strconv.Atoi(u.Uid)
}

// lookupGroup resolves a group: a numeric gid as is, or a group name.
func lookupGroup(v string) (int, error) {
	if id, ok := numericID(v); ok {
		return id, nil
	}
	g, err := user.LookupGroup(v)
	if err != nil {
		return 0, fmt.Errorf("unknown group '%s'", quote(v))
	}
	return strconv.Atoi(g.Gid)
}

// numericID reads a uid or gid; -1 (4294967295) means "no change" to
// chown(2), so it is not an id.
func numericID(v string) (int, bool) {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 1<<32-1 {
		return 0, false
	}
	return int(n), true
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// quote makes outside text safe to echo in a one-line error: control
// characters become '?', and long text is cut.
func quote(s string) string {
	if len(s) > maxQuotedBytes {
		s = s[:maxQuotedBytes] + "..."
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return '?'
		}
		return r
	}, s)
}
