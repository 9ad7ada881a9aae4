package listener

import (
	"reflect"
	"sort"
	"testing"
)

func TestSetAttributes(t *testing.T) {
	tests := []struct {
		attr, value string
		want        Spec // starting from Spec{Name: "s"}
		err         string
	}{
		{"host", "127.0.0.1", Spec{Host: "127.0.0.1"}, ""},
		{"host", "0.0.0.0", Spec{Host: "0.0.0.0"}, ""},
		{"host", "::", Spec{Host: "::"}, ""},
		{"host", "[::1]", Spec{Host: "[::1]"}, ""},
		{"host", "::1", Spec{Host: "::1"}, ""},
		{"host", "localhost", Spec{Host: "localhost"}, ""},
		{"host", "unix/", Spec{Host: "unix/"}, ""},
		{"host", "[fe80::1%eth0]", Spec{Host: "[fe80::1%eth0]"}, ""},
		{"host", "  10.0.0.1  ", Spec{Host: "10.0.0.1"}, ""},
		{"host", "foo bar", Spec{}, "invalid value"},
		{"host", "example.com", Spec{}, "invalid value"},
		{"host", "127.0.0.1:80", Spec{}, "invalid value"},
		{"host", "[127.0.0.1]", Spec{}, "invalid value"},
		{"host", "[::1", Spec{}, "invalid value"},
		{"host", "256.0.0.1", Spec{}, "invalid value"},
		{"host", "unix", Spec{}, "invalid value"},

		{"service", "8080", Spec{Service: "8080"}, ""},
		{"service", "0", Spec{Service: "0"}, ""},
		{"service", "65535", Spec{Service: "65535"}, ""},
		{"service", "http", Spec{Service: "http"}, ""},
		{"service", "/tmp/x.sock", Spec{Service: "/tmp/x.sock"}, ""},
		{"service", "65536", Spec{}, "invalid value"},
		{"service", "-1", Spec{}, "invalid value"},
		{"service", "no-such-service-here", Spec{}, "invalid value"},
		{"service", "x.sock", Spec{}, "invalid value"},
		{"service", "/" + string(make([]byte, 200)), Spec{}, "invalid value"},
		{"service", "/tmp/a\nb", Spec{}, "invalid value"},

		{"listen_qsize", "128", Spec{ListenQSize: 128}, ""},
		{"listen_qsize", "1", Spec{ListenQSize: 1}, ""},
		{"listen_qsize", "0", Spec{}, ""},
		{"listen_qsize", "max", Spec{}, ""},
		{"listen_qsize", " MAX ", Spec{}, ""},
		{"listen_qsize", "-5", Spec{}, "invalid value"},
		{"listen_qsize", "lots", Spec{}, "invalid value"},
		{"listen_qsize", "12.5", Spec{}, "invalid value"},
		{"listen_qsize", "99999999999", Spec{}, "invalid value"},

		{"mode", "0660", Spec{Mode: 0o660}, ""},
		{"mode", "600", Spec{Mode: 0o600}, ""},
		{"mode", "0777", Spec{Mode: 0o777}, ""},
		{"mode", "0", Spec{}, ""},
		{"mode", "0888", Spec{}, "invalid value"},
		{"mode", "4755", Spec{}, "invalid value"},
		{"mode", "07777", Spec{}, "invalid value"},
		{"mode", "rw-rw----", Spec{}, "invalid value"},
		{"mode", "0o660", Spec{}, "invalid value"},

		{"owner", "root", Spec{Owner: "root"}, ""},
		{"owner", "0", Spec{Owner: "0"}, ""},
		{"owner", "1000", Spec{Owner: "1000"}, ""},
		{"owner", "no-such-user-cfk", Spec{}, "invalid value"},
		{"owner", "4294967295", Spec{}, "invalid value"},
		{"group", "root", Spec{Group: "root"}, ""},
		{"group", "1000", Spec{Group: "1000"}, ""},
		{"group", "no-such-group-cfk", Spec{}, "invalid value"},

		{"name", "x", Spec{}, "invalid property 'name'"},
		{"port", "80", Spec{}, "invalid property 'port'"},
		{"", "80", Spec{}, "invalid property ''"},
		{"Host", "127.0.0.1", Spec{}, "invalid property 'Host'"},
	}
	for _, tt := range tests {
		s := Spec{Name: "s"}
		err := s.Set(tt.attr, tt.value)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.err {
			t.Errorf("Set(%q, %q) error = %q, want %q", tt.attr, tt.value, got, tt.err)
			continue
		}
		tt.want.Name = "s"
		if !reflect.DeepEqual(s, tt.want) {
			t.Errorf("Set(%q, %q) = %+v, want %+v", tt.attr, tt.value, s, tt.want)
		}
	}
}

func TestSetBooleans(t *testing.T) {
	for _, v := range []string{"1", "true", "on", "enabled", "yes", "TRUE", "On", "Yes", "ENABLED"} {
		s := Spec{}
		if err := s.Set("nonblocking", v); err != nil || !s.Nonblocking {
			t.Errorf("nonblocking=%s: %v, %v; want true", v, s.Nonblocking, err)
		}
	}
	for _, v := range []string{"0", "false", "off", "disabled", "no", "FALSE", "Off", "No"} {
		s := Spec{Nonblocking: true}
		if err := s.Set("nonblocking", v); err != nil || s.Nonblocking {
			t.Errorf("nonblocking=%s: %v, %v; want false", v, s.Nonblocking, err)
		}
	}
	// The original matched a loose regex: "none" counted as true.
	for _, v := range []string{"none", "2", "y", "n", "truee", "onn", "-1"} {
		s := Spec{Nonblocking: true}
		if err := s.Set("nonblocking", v); err == nil || err.Error() != "invalid value" || !s.Nonblocking {
			t.Errorf("nonblocking=%s: %v, %v; want invalid value and no change", v, s.Nonblocking, err)
		}
	}
}

// An empty value unsets: every attribute goes back to its default.
func TestSetEmptyUnsets(t *testing.T) {
	s := Spec{Name: "s", Host: "::1", Service: "80", ListenQSize: 5, Nonblocking: true,
		Mode: 0o600, Owner: "root", Group: "root"}
	for _, attr := range Attributes() {
		if err := s.Set(attr, ""); err != nil {
			t.Fatalf("Set(%q, \"\"): %v", attr, err)
		}
	}
	if want := (Spec{Name: "s"}); !reflect.DeepEqual(s, want) {
		t.Errorf("after unsetting everything: %+v, want %+v", s, want)
	}
	if err := s.Set("host", "   "); err != nil || s.Host != "" {
		t.Errorf("blank host: %q, %v", s.Host, err)
	}
}

// Attributes lists exactly the table Set uses.
func TestAttributesIsTheTable(t *testing.T) {
	var names []string
	for n := range attributes {
		names = append(names, n)
	}
	sort.Strings(names)
	if !reflect.DeepEqual(names, Attributes()) {
		t.Errorf("Attributes() = %v, table has %v", Attributes(), names)
	}
}

func TestNetwork(t *testing.T) {
	tests := []struct {
		spec Spec
		want string
	}{
		{Spec{}, "tcp"},
		{Spec{Service: "80"}, "tcp"},
		{Spec{Host: "::1", Service: "80"}, "tcp"},
		{Spec{Host: "unix/", Service: "/tmp/x"}, "unix"},
		{Spec{Host: "UNIX/", Service: "/tmp/x"}, "unix"},
		{Spec{Host: "unix/"}, "unix"},
		{Spec{Service: "/tmp/x"}, "unix"},
		{Spec{Host: "127.0.0.1", Service: "/tmp/x"}, "tcp"},
	}
	for _, tt := range tests {
		if got := tt.spec.Network(); got != tt.want {
			t.Errorf("%+v.Network() = %q, want %q", tt.spec, got, tt.want)
		}
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		host, service string
		network, addr string
		err           string
	}{
		{"", "8080", "tcp", "127.0.0.1:8080", ""},
		{"127.0.0.1", "80", "tcp", "127.0.0.1:80", ""},
		{"0.0.0.0", "0", "tcp", "0.0.0.0:0", ""},
		{"localhost", "80", "tcp", "127.0.0.1:80", ""},
		{"LocalHost", "80", "tcp", "127.0.0.1:80", ""},
		{"::", "80", "tcp", "[::]:80", ""},
		{"::1", "8080", "tcp", "[::1]:8080", ""},
		{"[::1]", "8080", "tcp", "[::1]:8080", ""},
		{"[fe80::1%eth0]", "80", "tcp", "[fe80::1%eth0]:80", ""},
		{"::ffff:10.1.2.3", "80", "tcp", "10.1.2.3:80", ""},
		{"127.0.0.1", "0080", "tcp", "127.0.0.1:80", ""},
		// getservbyname, as the original: /etc/services.
		{"127.0.0.1", "http", "tcp", "127.0.0.1:80", ""},
		{"", "https", "tcp", "127.0.0.1:443", ""},
		{"unix/", "/tmp/x.sock", "unix", "/tmp/x.sock", ""},
		{"", "/tmp/x.sock", "unix", "/tmp/x.sock", ""},

		{"foo bar", "80", "", "", "cannot parse host 'foo bar'"},
		{"example.com", "80", "", "", "cannot parse host 'example.com'"},
		{"[10.0.0.1]", "80", "", "", "cannot parse host '[10.0.0.1]'"},
		{"fe80::1%a b", "80", "", "", "cannot parse host 'fe80::1%a b'"},
		{"a\nb", "80", "", "", "cannot parse host 'a?b'"},
		{"127.0.0.1", "", "", "", "no service given (a port, a service name or a unix socket path)"},
		{"", "", "", "", "no service given (a port, a service name or a unix socket path)"},
		{"127.0.0.1", "65536", "", "", "port 65536 is out of range"},
		{"127.0.0.1", "no-such-service-here", "", "", "unknown service 'no-such-service-here'"},
		{"127.0.0.1", "80 81", "", "", "cannot parse service '80 81'"},
		{"127.0.0.1", "/tmp/x.sock", "", "", "host 127.0.0.1 cannot take the unix path '/tmp/x.sock'"},
		{"unix/", "8080", "", "", "host unix/ needs an absolute path as service, not '8080'"},
		{"unix/", "x.sock", "", "", "host unix/ needs an absolute path as service, not 'x.sock'"},
		{"unix/", "", "", "", "no unix socket path given"},
	}
	for _, tt := range tests {
		network, addr, err := ParseAddress(tt.host, tt.service)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.err || network != tt.network || addr != tt.addr {
			t.Errorf("ParseAddress(%q, %q) = %q, %q, %q; want %q, %q, %q",
				tt.host, tt.service, network, addr, got, tt.network, tt.addr, tt.err)
		}
	}
}

func TestParseAddressLongPath(t *testing.T) {
	long := "/" + string(repeat('a', 107))
	if _, _, err := ParseAddress("unix/", long[:107]); err != nil {
		t.Errorf("107-byte path: %v", err)
	}
	_, _, err := ParseAddress("unix/", long)
	if err == nil || err.Error() != "unix socket path '"+long[:80]+"...' is too long (108 bytes, at most 107)" {
		t.Errorf("108-byte path: %v", err)
	}
}

func repeat(b byte, n int) []byte {
	s := make([]byte, n)
	for i := range s {
		s[i] = b
	}
	return s
}
