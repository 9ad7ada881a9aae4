package proxy

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func TestDecodeStatus(t *testing.T) {
	for _, c := range []struct {
		line string
		want Status
		err  string
	}{
		{`{"status":"started","name":"w1","pid":42}`, Status{Started: true, Name: "w1", Pid: 42}, ""},
		{`{"status":"stopped","name":"w1","pid":42,"exit_status":768}`, Status{Name: "w1", Pid: 42, WaitStatus: 768}, ""},
		{`{"status":"stopped","name":"w1","pid":"42","exit_status":"15"}`, Status{Name: "w1", Pid: 42, WaitStatus: 15}, ""},
		{`{"status":"stopped","name":"w1","pid":42,"exit_status":null}`, Status{Name: "w1", Pid: 42}, ""},
		{`{"status":"started","name":"w1"}`, Status{}, "status for 'w1' has no valid pid"},
		{`{"status":"started","name":"w1","pid":-3}`, Status{}, "status for 'w1' has no valid pid"},
		{`{"status":"started","pid":3}`, Status{}, "status line names no service"},
		{`{"status":"exploded","name":"w1","pid":3}`, Status{}, "unknown status 'exploded'"},
		{`{"status":"stopped","name":"w1","pid":3,"exit_status":99999}`, Status{}, "stopped status for 'w1' has no valid exit_status"},
		{`not json`, Status{}, "malformed status line 'not json'"},
		{"\x00\xff", Status{}, "malformed status line '??'"},
	} {
		got, err := DecodeStatus([]byte(c.line))
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if gotErr != c.err || got != c.want {
			t.Errorf("%q: got %+v %q, want %+v %q", c.line, got, gotErr, c.want, c.err)
		}
	}
}

func TestParseLog(t *testing.T) {
	for _, c := range []struct {
		line string
		want LogLine
		err  bool
	}{
		{"out:w1:hello: world", LogLine{Service: "w1", Msg: "hello: world"}, false},
		{"err:-:proxy trouble", LogLine{Stderr: true, Msg: "proxy trouble"}, false},
		{"out:w1:", LogLine{Service: "w1"}, false},
		{"dbg:w1:x", LogLine{}, true},
		{"no colons", LogLine{}, true},
		{"out:only", LogLine{}, true},
	} {
		got, err := ParseLog([]byte(c.line))
		if (err != nil) != c.err || got != c.want {
			t.Errorf("%q: got %+v %v", c.line, got, err)
		}
	}
}

func TestEncodeIsTheOriginalsWire(t *testing.T) {
	sock := "fcgi"
	line := EncodeStart(StartCommand{Name: "w1", Cmd: "/app.pl", TieStdinTo: &sock, IgnoreStderr: 1})
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil || !bytes.HasSuffix(line, []byte("\n")) {
		t.Fatalf("%q: %v", line, err)
	}
	for k, v := range map[string]any{"command": "start", "name": "w1", "cmd": "/app.pl", "tie_stdin_to": "fcgi",
		"ignore_stderr": 1.0, "ignore_stdout": 0.0, "no_new_session": 0.0} {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if _, ok := m["env"].(map[string]any); !ok {
		t.Errorf("env is not an object: %v", m["env"])
	}
	if _, ok := m["sockets"]; ok {
		t.Errorf("empty sockets must be left out for old proxies")
	}
	if got := string(EncodeStop("w1")); got != `{"command":"stop","name":"w1"}`+"\n" {
		t.Errorf("stop: %q", got)
	}
}

func TestConnBoundsAndRelays(t *testing.T) {
	cmdR, cmdW, _ := os.Pipe()
	statusR, statusW, _ := os.Pipe()
	logR, logW, _ := os.Pipe()
	statuses := make(chan Status, 10)
	logs := make(chan LogLine, 100)
	bad := make(chan error, 100)
	c := Open(cmdW, statusR, logR, Handlers{
		Status: func(s Status) { statuses <- s },
		Log:    func(l LogLine) { logs <- l },
		Bad:    func(err error) { bad <- err },
	})
	if err := c.Send(EncodeStop("w1")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, _ := cmdR.Read(buf)
	if string(buf[:n]) != `{"command":"stop","name":"w1"}`+"\n" {
		t.Fatalf("proxy read %q", buf[:n])
	}
	statusW.WriteString(strings.Repeat("x", maxStatusBytes+10) + "\n")
	statusW.WriteString(`{"status":"started","name":"w1","pid":7}` + "\n")
	logW.WriteString("out:w1:" + strings.Repeat("y", maxLogBytes) + "\nerr:-:done\n")
	select {
	case st := <-statuses:
		if st.Pid != 7 {
			t.Fatalf("status %+v", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no status after an over-long line")
	}
	select {
	case err := <-bad:
		if !strings.Contains(err.Error(), "longer than") {
			t.Errorf("bad: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("over-long status not reported")
	}
	var pieces []LogLine
	for len(pieces) < 3 {
		select {
		case l := <-logs:
			pieces = append(pieces, l)
		case <-time.After(5 * time.Second):
			t.Fatalf("log pieces: %+v", pieces)
		}
	}
	if pieces[0].Service != "w1" || pieces[1].Service != "w1" || pieces[2].Msg != "done" || !pieces[2].Stderr {
		t.Errorf("long log line pieces: %+v", pieces)
	}
	// A proxy that never reads: Send fails fast once the queue is full.
	var full error
	for i := 0; i < commandQueue+10000 && full == nil; i++ {
		full = c.Send(EncodeStop(strings.Repeat("z", 1000)))
	}
	if full != ErrQueueFull {
		t.Errorf("queue never filled: %v", full)
	}
	c.Close()
	statusW.Close()
	logW.Close()
	cmdR.Close()
	c.Wait()
}

func FuzzDecodeStatus(f *testing.F) {
	for _, s := range []string{
		`{"status":"started","name":"w1","pid":42}`,
		`{"status":"stopped","name":"w1","pid":42,"exit_status":768}`,
		`{"status":"stopped","name":"w","pid":"1","exit_status":"15"}`,
		`{"status":"stopped","name":"w","pid":1e3,"exit_status":null}`,
		`{}`, `[]`, `null`, `{"pid":99999999999999999999}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := DecodeStatus(b)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") || len(err.Error()) > 300 {
				t.Fatalf("error not one short line: %q", err)
			}
			return
		}
		if st.Pid <= 0 || st.Name == "" {
			t.Fatalf("accepted %+v", st)
		}
	})
}

func FuzzParseLog(f *testing.F) {
	for _, s := range []string{"out:w1:hello", "err:-:x", "out::", "::", "out:w:a:b:c", "\xff:\x00:"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLog(b)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		want := "out:"
		if l.Stderr {
			want = "err:"
		}
		if !bytes.HasPrefix(b, []byte(want)) {
			t.Fatalf("%q parsed as %+v", b, l)
		}
	})
}
