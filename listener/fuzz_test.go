package listener

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseAddress feeds the address parser what operators (and typos)
// may write: it must never panic, its errors must be one plain line, and
// what it accepts must be something bind(2) takes and it would accept
// again.
func FuzzParseAddress(f *testing.F) {
	for _, seed := range [][2]string{
		{"127.0.0.1", "80"}, {"", "8080"}, {"0.0.0.0", "0"}, {"::", "http"},
		{"[::1]", "8080"}, {"localhost", "https"}, {"unix/", "/tmp/x.sock"},
		{"", "/run/cfk/web.sock"}, {"[fe80::1%eth0]", "80"}, {"::ffff:1.2.3.4", "22"},
		{"foo bar", "80"}, {"127.0.0.1", "/x"}, {"unix/", "80"}, {"[::1", "1"},
		{"1.2.3.4", "65536"}, {"", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, host, service string) {
		network, addr, err := ParseAddress(host, service)
		if err != nil {
			msg := err.Error()
			if msg == "" || strings.ContainsFunc(msg, isControl) || len(msg) > 400 {
				t.Fatalf("ParseAddress(%q, %q): error is not one short line: %q", host, service, msg)
			}
			for _, leak := range []string{"netip", "strconv", "ParseAddr", "*", "invalid syntax"} {
				if strings.Contains(msg, leak) && !strings.Contains(host+service, leak) {
					t.Fatalf("ParseAddress(%q, %q): Go internals in %q", host, service, msg)
				}
			}
			if network != "" || addr != "" {
				t.Fatalf("ParseAddress(%q, %q): error %q with a result %q %q", host, service, msg, network, addr)
			}
			return
		}
		if got := (Spec{Host: host, Service: service}).Network(); got != network {
			t.Fatalf("ParseAddress(%q, %q) = %s but Network() = %s", host, service, network, got)
		}
		// What ParseAddress takes, Set takes too.
		var s Spec
		if host != "" {
			if err := s.Set("host", host); err != nil {
				t.Fatalf("ParseAddress takes host %q, Set refuses it: %v", host, err)
			}
		}
		if err := s.Set("service", service); err != nil {
			t.Fatalf("ParseAddress takes service %q, Set refuses it: %v", service, err)
		}
		switch network {
		case "unix":
			if addr != service || !strings.HasPrefix(addr, "/") || len(addr) > maxUnixPathBytes ||
				strings.ContainsFunc(addr, isControl) {
				t.Fatalf("ParseAddress(%q, %q): bad unix path %q", host, service, addr)
			}
		case "tcp":
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				t.Fatalf("ParseAddress(%q, %q) = %q, not an address:port: %v", host, service, addr, err)
			}
			if ap.Addr().Is4In6() && ap.Addr().Zone() == "" {
				t.Fatalf("ParseAddress(%q, %q) = %q: a mapped IPv4 address was not unmapped", host, service, addr)
			}
			h, p, err := net.SplitHostPort(addr)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(h, ":") {
				h = "[" + h + "]"
			}
			n2, addr2, err := ParseAddress(h, p)
			if err != nil || n2 != network || addr2 != addr {
				t.Fatalf("ParseAddress(%q, %q) = %q, but ParseAddress(%q, %q) = %q, %q, %v",
					host, service, addr, h, p, n2, addr2, err)
			}
			if port, _ := strconv.Atoi(p); port < 0 || port > 65535 {
				t.Fatalf("port %d", port)
			}
		default:
			t.Fatalf("ParseAddress(%q, %q): network %q", host, service, network)
		}
		if !utf8.ValidString(addr) && utf8.ValidString(host+service) {
			t.Fatalf("ParseAddress(%q, %q) made invalid UTF-8 %q", host, service, addr)
		}
	})
}

// FuzzSpecSet feeds every attribute any text: Set never panics, answers
// nil or exactly "invalid value", and leaves the Spec alone on error.
func FuzzSpecSet(f *testing.F) {
	for _, v := range []string{"", "0660", "max", "128", "yes", "none", "root", "65534", "::1", "/tmp/x", "http", " 8 "} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, value string) {
		for _, attr := range Attributes() {
			s := Spec{Name: "s", Host: "::1", Service: "80", ListenQSize: 9, Nonblocking: true, Mode: 0o600}
			before := s
			err := s.Set(attr, value)
			if err != nil {
				if err.Error() != "invalid value" {
					t.Fatalf("Set(%q, %q) = %q", attr, value, err)
				}
				if s != before {
					t.Fatalf("Set(%q, %q) failed but changed the spec: %+v", attr, value, s)
				}
			}
			if s.ListenQSize < 0 || s.Mode&^0o777 != 0 {
				t.Fatalf("Set(%q, %q) made %+v", attr, value, s)
			}
		}
	})
}
