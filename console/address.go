package console

import (
	"fmt"
	"net"
	"strings"
)

// DefaultPort is the TCP port of a management address given without one.
const DefaultPort = "11311"

// Address is a parsed management-socket address: a unix socket path or a
// TCP host:port.
type Address struct {
	Network string // "unix" or "tcp"
	Addr    string // the path, or host:port
}

// String gives the address back in the form ParseAddress takes.
func (a Address) String() string {
	if a.Network == "unix" {
		return "unix:" + a.Addr
	}
	return a.Addr
}

// ParseAddress reads a management address as the original's cfkd and
// cfkctl did: `unix:/path`, `/path` or a relative path containing a slash
// are unix sockets; anything else is `host:port` for TCP, the port
// defaulting to 11311 (`host` alone, or `host:`).
func ParseAddress(s string) (Address, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return Address{}, fmt.Errorf("empty address")
	case strings.HasPrefix(s, "unix:"):
		p := strings.TrimPrefix(s, "unix:")
		// The original wrote the default as "unix://home/...": keep one slash.
		for strings.HasPrefix(p, "//") {
			p = p[1:]
		}
		if p == "" {
			return Address{}, fmt.Errorf("address %q names no socket path", s)
		}
		return Address{Network: "unix", Addr: p}, nil
	case strings.HasPrefix(s, "/"), strings.Contains(s, "/") && !strings.Contains(s, ":"):
		return Address{Network: "unix", Addr: s}, nil
	}
	s = strings.TrimRight(s, "/")
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port at all: "localhost", "[::1]".
		host, port = strings.Trim(s, "[]"), DefaultPort
	}
	if port == "" {
		port = DefaultPort
	}
	return Address{Network: "tcp", Addr: net.JoinHostPort(host, port)}, nil
}
