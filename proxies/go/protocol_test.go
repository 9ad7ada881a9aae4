package cfkproxy

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	for _, c := range []struct {
		line string
		want *command
		err  string
	}{
		{
			line: `{"command":"start","name":"w1","cmd":"/srv/app/worker.pl","env":{"K":"V"},"tie_stdin_to":"fcgi","ignore_stdout":0,"ignore_stderr":0,"no_new_session":0,"sockets":["web"]}`,
			want: &command{verb: "start", name: "w1", cmd: []string{"/srv/app/worker.pl"}, env: []string{"K=V"},
				tieStdinTo: "fcgi", sockets: []string{"web"}, newSession: true},
		},
		{
			// What the original cfkd sent: Perl values, no sockets.
			line: `{"command":"start","name":"w2","cmd":["a","b c"],"env":{"B":2,"A":null,"C":true},"tie_stdin_to":null,"ignore_stdout":"1","ignore_stderr":"","no_new_session":"0"}`,
			want: &command{verb: "start", name: "w2", cmd: []string{"a", "b c"}, env: []string{"A=", "B=2", "C=1"},
				ignoreStdout: true, newSession: true},
		},
		{
			line: `{"command":"start","name":"w3","cmd":"lookup  --fast ","ignore_stdout":true,"ignore_stderr":1,"no_new_session":true}`,
			want: &command{verb: "start", name: "w3", cmd: []string{"lookup", "--fast"}, ignoreStdout: true, ignoreStderr: true},
		},
		{line: `{"command":"start","name":"w4"}`, want: &command{verb: "start", name: "w4", newSession: true}},
		{line: `{"command":"stop","name":"w1"}`, want: &command{verb: "stop", name: "w1"}},
		{line: `{"command":"stop","name":"w1","extra":[1,2]}`, want: &command{verb: "stop", name: "w1"}},

		{line: `{not json`, err: "parse error in command"},
		{line: `[]`, err: "parse error in command"},
		{line: `{"command":"restart","name":"w1"}`, err: "couldn't understand command"},
		{line: `{"name":"w1"}`, err: "couldn't understand command"},
		{line: `{"command":"stop"}`, err: "no service name"},
		{line: `{"command":"stop","name":"-"}`, err: "invalid service name"},
		{line: `{"command":"start","name":"a:b"}`, err: "invalid service name"},
		{line: `{"command":"start","name":"a\nb"}`, err: "invalid service name"},
		{line: `{"command":"start","name":"w","cmd":5}`, err: "cmd: want a string or an array"},
		{line: `{"command":"start","name":"w","cmd":["a",1]}`, err: "cmd: want a string or an array"},
		{line: `{"command":"start","name":"w","env":{"A=B":"x"}}`, err: "invalid environment variable name"},
		{line: `{"command":"start","name":"w","env":{"A":{"x":1}}}`, err: "env A"},
		{line: `{"command":"start","name":"w","env":{"A":"a\u0000b"}}`, err: "env A"},
		{line: `{"command":"start","name":"w","sockets":["a:b"]}`, err: "invalid socket name"},
		{line: `{"command":"start","name":"w","sockets":"web"}`, err: "parse error"},
		{line: `{"command":"start","name":"w","tie_stdin_to":["x"]}`, err: "tie_stdin_to"},
	} {
		got, err := parseCommand([]byte(c.line))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want one saying %q", c.line, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.line, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.line, got, c.want)
		}
	}
}

func TestPerlTrue(t *testing.T) {
	for raw, want := range map[string]bool{
		``: false, `null`: false, `false`: false, `0`: false, `0.0`: false, `""`: false, `"0"`: false,
		`true`: true, `1`: true, `-1`: true, `"1"`: true, `"0.0"`: true, `"00"`: true, `" "`: true, `[1]`: true, `{}`: true,
	} {
		if got := perlTrue(json.RawMessage(raw)); got != want {
			t.Errorf("perlTrue(%s) = %v, want %v", raw, got, want)
		}
	}
}

func TestStatusLines(t *testing.T) {
	if got, want := string(startedLine("w1", 4242)), `{"status":"started","name":"w1","pid":4242}`+"\n"; got != want {
		t.Errorf("started: %q, want %q", got, want)
	}
	if got, want := string(stoppedLine("w1", 4242, 256)), `{"status":"stopped","name":"w1","pid":4242,"exit_status":256}`+"\n"; got != want {
		t.Errorf("stopped: %q, want %q", got, want)
	}
	if got, want := string(stoppedLine("w1", 4242, 0)), `{"status":"stopped","name":"w1","pid":4242,"exit_status":0}`+"\n"; got != want {
		t.Errorf("stopped with 0: %q, want %q", got, want)
	}
	if got, want := string(logLine(logErr, proxyService, "x: y")), "err:-:x: y\n"; got != want {
		t.Errorf("log line %q, want %q", got, want)
	}
}

func TestWorkerEnv(t *testing.T) {
	got := workerEnv([]string{"PATH=/bin", "_CFK_COMMAND_FD=3", "_CFK_SOCK_web=6", "_CFKPROXY_SHARED_FD=4",
		"LISTEN_FDS=1", "LISTEN_PID=1", "LISTEN_FDNAMES=x", "CFKD_HOME=/h", "LISTEN_FDSX=1"})
	want := []string{"PATH=/bin", "CFKD_HOME=/h", "LISTEN_FDSX=1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("workerEnv: %q, want %q", got, want)
	}
	if got, want := dedupEnv([]string{"A=1", "B=2", "A=3", "C", "C=4"}), []string{"A=3", "B=2", "C=4"}; !reflect.DeepEqual(got, want) {
		t.Errorf("dedupEnv: %q, want %q", got, want)
	}
}

// FuzzParseCommand: whatever cfkd (or anything writing to the command
// pipe) sends, parseCommand returns a command or an error, never panics,
// and a start it accepts cannot break the log framing or the environment.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		`{"command":"start","name":"w1","cmd":"/srv/app/worker.pl","env":{"K":"V"},"tie_stdin_to":"fcgi","ignore_stdout":0,"ignore_stderr":0,"no_new_session":0,"sockets":["web"]}`,
		`{"command":"start","name":"w2","cmd":["a","b"],"env":{"B":2,"A":null},"tie_stdin_to":null,"ignore_stdout":"1"}`,
		`{"command":"stop","name":"w1"}`,
		`{"command":"stop","name":"a:b"}`,
		`{not json`,
		``,
		`null`,
		`{"command":"start","name":"w","env":{"":""}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		c, err := parseCommand(line)
		if err != nil {
			if strings.ContainsAny(oneLine(err.Error()), "\n\r") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if c.verb != "start" && c.verb != "stop" {
			t.Fatalf("verb %q", c.verb)
		}
		if checkName(c.name) != nil {
			t.Fatalf("accepted name %q", c.name)
		}
		for _, kv := range c.env {
			k, _, ok := strings.Cut(kv, "=")
			if !ok || k == "" || strings.ContainsRune(kv, 0) {
				t.Fatalf("bad env entry %q", kv)
			}
		}
		for _, s := range c.sockets {
			if s == "" || strings.ContainsAny(s, ":\x00") {
				t.Fatalf("bad socket name %q", s)
			}
		}
	})
}
