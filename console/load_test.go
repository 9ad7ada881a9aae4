package console

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// recorder is a Handler that keeps what it was asked, and fails on
// `command fail MSG`.
type recorder struct{ reqs []Request }

func (r *recorder) Execute(req Request) ([]string, error) {
	if req.Kind == KindCommand && req.Verb == "fail" {
		return nil, errors.New(strings.Join(req.Args, " "))
	}
	r.reqs = append(r.reqs, req)
	return []string{"ignored output"}, nil
}

const tutorialConfig = `# a config in the tutorial's style
service web1 cmd=sleep 100
service web1 tags=web,prod

	# indented comment, then blank lines with spaces
   
service web2 cmd = "sleep 100"   # trailing comment
socket fcgi host=127.0.0.1
proxy p1 service web2 desc=
command bind fcgi`

func TestLoad(t *testing.T) {
	want := []Request{
		svc("web1", "cmd", "sleep 100"),
		svc("web1", "tags", "web,prod"),
		svc("web2", "cmd", "sleep 100"),
		{Kind: KindSocket, Name: "fcgi", Attr: "host", Value: "127.0.0.1"},
		{Kind: KindProxyService, Name: "p1", Service: "web2", Attr: "desc"},
		cmd("bind", "fcgi"),
	}
	for name, text := range map[string]string{
		"LF":         tutorialConfig,
		"LF final":   tutorialConfig + "\n",
		"CRLF":       strings.ReplaceAll(tutorialConfig, "\n", "\r\n"),
		"CRLF final": strings.ReplaceAll(tutorialConfig, "\n", "\r\n") + "\r\n",
	} {
		h := &recorder{}
		// One byte at a time, to cross every buffer boundary.
		n, err := Load(iotest.OneByteReader(strings.NewReader(text)), "cfk.conf", h)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if n != len(want) || !reflect.DeepEqual(h.reqs, want) {
			t.Errorf("%s: n = %d, requests\n%#v\nwant\n%#v", name, n, h.reqs, want)
		}
	}
}

func TestLoadStopsAtFirstError(t *testing.T) {
	tests := []struct {
		text string
		n    int
		line int
		msg  string
	}{
		{"service a cmd=x\n\n# c\ncommand fail no good\nservice b cmd=y\n", 1, 4, "no good"},
		{"service a cmd=x\r\nservice my-svc cmd=y\r\n", 1, 2, "service name is invalid"},
		{"bogus\n", 0, 1, "unknown command 'bogus'"},
		{"service a cmd=x\nservice a", 1, 2, "malformed service command 'a'"},
		{"service a cmd=x\n" + strings.Repeat("#", DefaultMaxLineBytes+1) + "\nservice b cmd=y\n", 1, 2, "line too long (limit 65536 bytes)"},
		{"service a cmd=x\n" + strings.Repeat("x", DefaultMaxLineBytes+1), 1, 2, "line too long (limit 65536 bytes)"},
		{"service a desc=\x00\n", 0, 1, "command contains a NUL byte"},
	}
	for _, tt := range tests {
		h := &recorder{}
		n, err := Load(strings.NewReader(tt.text), "etc/cfk.conf", h)
		var le *LoadError
		if !errors.As(err, &le) {
			t.Errorf("%q: error %v, want a *LoadError", tt.text, err)
			continue
		}
		want := LoadError{File: "etc/cfk.conf", Line: tt.line, Msg: tt.msg}
		if *le != want || n != tt.n || len(h.reqs) != tt.n {
			t.Errorf("%q: n = %d (%d requests), err %#v; want n = %d, %#v", tt.text, n, len(h.reqs), *le, tt.n, want)
		}
		if got, want := err.Error(), "etc/cfk.conf:"+strconv.Itoa(tt.line)+": "+tt.msg; got != want {
			t.Errorf("%q: message %q, want %q", tt.text, got, want)
		}
	}
}

func TestLoadReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	n, err := Load(&failingReader{data: "service a cmd=x\nservice b cm", err: boom}, "f", &recorder{})
	if n != 1 || !errors.Is(err, boom) || err.Error() != "f:2: disk on fire" {
		t.Errorf("n = %d, err = %v", n, err)
	}
}

type failingReader struct {
	data string
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}
