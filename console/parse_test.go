package console

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func svc(name, attr, value string) Request {
	return Request{Kind: KindService, Name: name, Attr: attr, Value: value}
}

func cmd(verb string, args ...string) Request {
	r := Request{Kind: KindCommand, Verb: verb}
	if len(args) > 0 {
		r.Args = args
	}
	return r
}

func TestParseDeclarations(t *testing.T) {
	tests := []struct {
		line string
		want Request
	}{
		// Value forms.
		{"service svc1 cmd=sleep 100", svc("svc1", "cmd", "sleep 100")},
		{"service svc1 cmd=   sleep 100", svc("svc1", "cmd", "sleep 100")},
		{"service svc1 cmd\t=\tsleep 100", svc("svc1", "cmd", "sleep 100")},
		{"service svc1 cmd = sleep 100", svc("svc1", "cmd", "sleep 100")},
		{"service svc1 cmd =sleep 100", svc("svc1", "cmd", "sleep 100")},
		{"service svc1 cmd=sleep 100   ", svc("svc1", "cmd", "sleep 100")},
		{`service s desc="a quoted value"`, svc("s", "desc", "a quoted value")},
		{`service s desc='a quoted value'`, svc("s", "desc", "a quoted value")},
		{`service s desc = "  spaces kept inside  "`, svc("s", "desc", "  spaces kept inside  ")},
		{`service s cmd="perl -e "print 1""`, svc("s", "cmd", `perl -e "print 1"`)}, // greedy
		{`service s cmd='a' and 'b'`, svc("s", "cmd", `a' and 'b`)},
		{`service s cmd="a" trailing`, svc("s", "cmd", "a")}, // Perl's ^"(.*)" ignores what follows
		{`service s desc="unclosed`, svc("s", "desc", `"unclosed`)},
		{`service s desc='`, svc("s", "desc", `'`)},
		{`service s desc=""`, svc("s", "desc", "")},
		{`service s desc=''`, svc("s", "desc", "")},
		{`service s desc=it's "fine"`, svc("s", "desc", `it's "fine"`)},
		{`service s cmd=["a","b"]`, svc("s", "cmd", `["a","b"]`)},
		{`service s cmd = ["a", "b"]`, svc("s", "cmd", `["a", "b"]`)},
		{`service s cmd= ["perl", "-e", "print 'hi'"]`, svc("s", "cmd", `["perl", "-e", "print 'hi'"]`)},
		{"service s add_env=KEY=VALUE", svc("s", "add_env", "KEY=VALUE")},
		{"service s add_env = A=b=c", svc("s", "add_env", "A=b=c")},
		{"service s tags=web, prod", svc("s", "tags", "web, prod")},
		{"service s desc=", svc("s", "desc", "")},
		{"service s desc =   ", svc("s", "desc", "")},
		{"service s desc=café ünïcode", svc("s", "desc", "café ünïcode")},
		{"service s desc=\x80\xff", svc("s", "desc", "\x80\xff")},
		{"service s desc=a\x1bb", svc("s", "desc", "a\x1bb")},
		{"  \tservice   s   desc=x", svc("s", "desc", "x")},
		{"service s desc=x\r", svc("s", "desc", "x")},

		// Names.
		{"service _x9 cmd=x", svc("_x9", "cmd", "x")},
		{"service S cmd=x", svc("S", "cmd", "x")},
		{"service s respawn-on-fail=1", svc("s", "respawn-on-fail", "1")},
		{"service s 9attr=1", svc("s", "9attr", "1")},
		{"socket web-01 host=127.0.0.1", Request{Kind: KindSocket, Name: "web-01", Attr: "host", Value: "127.0.0.1"}},
		{"socket 80 service = 8080", Request{Kind: KindSocket, Name: "80", Attr: "service", Value: "8080"}},
		{"socket s listen_qsize = max", Request{Kind: KindSocket, Name: "s", Attr: "listen_qsize", Value: "max"}},
		{"socket s host=unix/", Request{Kind: KindSocket, Name: "s", Attr: "host", Value: "unix/"}},

		// Proxies.
		{"proxy p1 cmd=perl proxy.pl", Request{Kind: KindProxy, Name: "p1", Attr: "cmd", Value: "perl proxy.pl"}},
		{"proxy p-1 cmd = perl proxy.pl", Request{Kind: KindProxy, Name: "p-1", Attr: "cmd", Value: "perl proxy.pl"}},
		{`proxy p cmd = ["perl","proxy.pl"]`, Request{Kind: KindProxy, Name: "p", Attr: "cmd", Value: `["perl","proxy.pl"]`}},
		{"proxy p noauto=1", Request{Kind: KindProxy, Name: "p", Attr: "noauto", Value: "1"}},
		{"proxy p service=x", Request{Kind: KindProxy, Name: "p", Attr: "service", Value: "x"}},
		{"proxy p service = x y", Request{Kind: KindProxy, Name: "p", Attr: "service", Value: "x y"}},
		{"proxy p cmd = service s1 a=b", Request{Kind: KindProxy, Name: "p", Attr: "cmd", Value: "service s1 a=b"}},
		{"proxy p service s1 cmd=worker.pl", Request{Kind: KindProxyService, Name: "p", Service: "s1", Attr: "cmd", Value: "worker.pl"}},
		{"proxy p  service\ts1  cmd = 'worker.pl' ", Request{Kind: KindProxyService, Name: "p", Service: "s1", Attr: "cmd", Value: "worker.pl"}},
		{"proxy p service s1 desc=", Request{Kind: KindProxyService, Name: "p", Service: "s1", Attr: "desc"}},

		// Comments and CRLF.
		{"service s cmd=sleep 1 # a comment", svc("s", "cmd", "sleep 1")},
		{"service s cmd=sleep 1\t# a comment", svc("s", "cmd", "sleep 1")},
		{"service s cmd=curl http://x/#top", svc("s", "cmd", "curl http://x/#top")},
		{"service s desc=issue#42", svc("s", "desc", "issue#42")},
		{"service s cmd=sh -c 'echo a # b'", svc("s", "cmd", "sh -c 'echo a # b'")},
		{`service s cmd=sh -c "echo a # b" # c`, svc("s", "cmd", `sh -c "echo a # b"`)},
		{`service s desc="# not a comment"`, svc("s", "desc", "# not a comment")},
		{`service s desc='#1' # comment 'x'`, svc("s", "desc", "#1")},
		{`service s cmd="sleep 1" # the "main" one`, svc("s", "cmd", "sleep 1")},
		{`service s desc=Bob's box # note`, svc("s", "desc", "Bob's box")},
		{`service s cmd=["sh","-c","echo # x"]`, svc("s", "cmd", `["sh","-c","echo # x"]`)},
		{`service s cmd=["sh","-c","echo \"#1\" # x"] # y`, svc("s", "cmd", `["sh","-c","echo \"#1\" # x"]`)},
		{`service s desc="unclosed # comment`, svc("s", "desc", `"unclosed`)},
		{"service s cmd=x #", svc("s", "cmd", "x")},
		{"service s cmd=x\r\n", svc("s", "cmd", "x")},
		{"service s cmd=x # comment\r", svc("s", "cmd", "x")},

		// Commands.
		{"command status", cmd("status")},
		{"command start service svc2", cmd("start", "service", "svc2")},
		{"command   stop \t tag  web  ", cmd("stop", "tag", "web")},
		{"command restart all # everything", cmd("restart", "all")},
		{"command bind sock1\r", cmd("bind", "sock1")},
		{"command Status", cmd("Status")},
		{"command \x80\xfe", cmd("\x80\xfe")},
		{`command x "a #b"`, cmd("x", `"a`, `#b"`)},
	}
	for _, tt := range tests {
		got, err := Parse(tt.line)
		if err != nil {
			t.Errorf("Parse(%q): error %q", tt.line, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Parse(%q)\n got %#v\nwant %#v", tt.line, got, tt.want)
		}
		if got.Unset() != (tt.want.Value == "") {
			t.Errorf("Parse(%q).Unset() = %v", tt.line, got.Unset())
		}
	}
}

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("x", 1000)
	tests := []struct {
		line string
		want string
	}{
		{"", "command is void"},
		{"   \t ", "command is void"},
		{"\r", "command is void"},
		{"# just a comment", "command is void"},
		{"   # indented comment", "command is void"},
		{"#service s cmd=x", "command is void"},

		{"services s cmd=x", "unknown command 'services'"},
		{"Service s cmd=x", "unknown command 'Service'"},
		{"exit", "unknown command 'exit'"},
		{"logger x=1", "unknown command 'logger'"},
		{"console address=x", "unknown command 'console'"},
		{"status", "unknown command 'status'"},
		{"service#x s cmd=x", "unknown command 'service#x'"},
		{"\x01\x02\xff", "unknown command '???'"},
		{"\x1b[31mred", "unknown command '?[31mred'"},
		{long, "unknown command '" + long[:256] + "...'"},

		{"service", "empty service command"},
		{"service   # comment", "empty service command"},
		{"socket", "empty socket command"},
		{"proxy", "empty proxy command"},
		{"command", "empty command"},
		{"command\t", "empty command"},

		{"service s", "malformed service command 's'"},
		{"service s cmd", "malformed service command 's cmd'"},
		{"service s cmd sleep", "malformed service command 's cmd sleep'"},
		{"service s a b=c", "malformed service command 's a b=c'"},
		{"service s =x", "malformed service command 's =x'"},
		{"service s=x", "malformed service command 's=x'"},
		{"service s c.md=x", "malformed service command 's c.md=x'"},
		{"service s.x cmd=x", "malformed service command 's.x cmd=x'"},
		{"service \"s\" cmd=x", "malformed service command '\"s\" cmd=x'"},
		{"service sé cmd=x", "malformed service command 'sé cmd=x'"},
		{"service s\x1b cmd=x", "malformed service command 's? cmd=x'"},
		{"socket s", "malformed socket command 's'"},
		{"socket s host", "malformed socket command 's host'"},
		{"socket s.1 host=x", "malformed socket command 's.1 host=x'"},
		{"proxy p", "malformed proxy command 'p'"},
		{"proxy p service", "malformed proxy command 'p service'"},
		{"proxy p service s1", "malformed proxy command 'p service s1'"},
		{"proxy p service s1 cmd", "malformed proxy command 'p service s1 cmd'"},
		{"proxy p other s1 cmd=x", "malformed proxy command 'p other s1 cmd=x'"},
		{"proxy p services s1 cmd=x", "malformed proxy command 'p services s1 cmd=x'"},

		{"service my-svc cmd=x", "service name is invalid"},
		{"service 9lives cmd=x", "service name is invalid"},
		{"service - cmd=x", "service name is invalid"},
		{"proxy p service my-svc cmd=x", "service name is invalid"},
		{"proxy p service 1 cmd=x", "service name is invalid"},

		{"service s desc=a\x00b", "command contains a NUL byte"},
		{"\x00", "command contains a NUL byte"},
		{"service s desc=a\nb", "command spans several lines"},
		{"command status\ncommand stop all", "command spans several lines"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.line)
		if err == nil {
			t.Errorf("Parse(%q) = %#v, want error %q", tt.line, got, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("Parse(%q): error %q, want %q", tt.line, err, tt.want)
		}
		if (tt.want == "command is void") != errors.Is(err, ErrVoid) {
			t.Errorf("Parse(%q): errors.Is(err, ErrVoid) = %v", tt.line, errors.Is(err, ErrVoid))
		}
	}
}

func TestRequestString(t *testing.T) {
	tests := []struct {
		req  Request
		want string
	}{
		{svc("s", "cmd", "sleep 1"), "service s cmd=sleep 1"},
		{svc("s", "desc", ""), "service s desc="},
		{svc("s", "desc", " padded "), `service s desc=" padded "`},
		{svc("s", "desc", "#1"), `service s desc="#1"`},
		{svc("s", "desc", `say "hi" # x`), `service s desc='say "hi" # x'`},
		{svc("s", "desc", `"quoted"`), `service s desc='"quoted"'`},
		{svc("s", "desc", `it's`), `service s desc=it's`},
		{svc("s", "desc", `a #\`), `service s desc='a #\'`},
		{svc("s", "desc", `a #\\`), `service s desc="a #\\"`},
		{svc("s", "desc", `a\" #`), `service s desc='a\" #'`},
		{svc("s", "desc", `C:\ #`), `service s desc="C:\ #"`},
		{svc("s", "cmd", `["a","b"]`), `service s cmd=["a","b"]`},
		{Request{Kind: KindSocket, Name: "w", Attr: "service", Value: "80"}, "socket w service=80"},
		{Request{Kind: KindProxy, Name: "p", Attr: "noauto", Value: "1"}, "proxy p noauto=1"},
		{Request{Kind: KindProxyService, Name: "p", Service: "s", Attr: "cmd", Value: "w.pl"}, "proxy p service s cmd=w.pl"},
		{cmd("start", "tag", "web"), "command start tag web"},
		{cmd("status"), "command status"},
		{Request{}, ""},
	}
	for _, tt := range tests {
		if got := tt.req.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.req, got, tt.want)
			continue
		}
		if tt.want == "" {
			continue
		}
		back, err := Parse(tt.want)
		if err != nil || !reflect.DeepEqual(back, tt.req) {
			t.Errorf("Parse(%q) = %#v, %v; want %#v", tt.want, back, err, tt.req)
		}
	}
}
