package supervisor

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/controlfreak-go/cfk/console"
)

func TestDumpRecreatesServices(t *testing.T) {
	h := newHarness(t)
	for _, l := range []string{
		"socket web host=127.0.0.1",
		"socket web service=0",
		"socket web listen_qsize=64",
		`proxy p cmd=["/bin/true","--preload","x y"]`,
		"proxy p add_env=A=1",
		"proxy p noauto=1",
		`service web1 cmd=/bin/sleep 100 # comment`,
		`service web1 desc=  "the first # worker"`,
		"service web1 tags=web,prod",
		"service web1 add_env=GREETING= hello world ",
		"service web1 startwait_secs=0.25",
		"service web1 respawn_on_stop=1",
		"service web1 sockets=web",
		`proxy p service web2 cmd=["app.pl","it's"]`,
		"service web2 tie_stdin_to=web",
		"service web2 respawn_max_retries=3",
		"service web2 no_new_session=yes",
		"service web2 ignore_stderr=on",
	} {
		h.must(l)
	}
	dump := h.must("command dump all")

	h2 := newHarness(t)
	for _, l := range dump {
		req, err := console.Parse(l)
		if err != nil {
			t.Fatalf("dump line %q does not parse: %v", l, err)
		}
		if _, err := h2.s.Execute(req); err != nil {
			t.Fatalf("dump line %q refused: %v", l, err)
		}
	}
	for _, q := range []string{"command dump all", "command desc all", "command sockets", "command proxystatus"} {
		a, b := h.must(q), h2.must(q)
		if q == "command sockets" { // fds differ
			a, b = stripField(a, 3), stripField(b, 3)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s differs:\n%q\n%q", q, a, b)
		}
	}
	joined := strings.Join(dump, "\n")
	for _, want := range []string{"proxy p service web2 cmd=", `desc="the first # worker"`, "add_env=GREETING= hello world", "startwait_secs=0.25", "socket web listen_qsize=64"} {
		if !strings.Contains(joined, want) {
			t.Errorf("dump lacks %q:\n%s", want, joined)
		}
	}
}

func stripField(lines []string, i int) []string {
	out := make([]string, len(lines))
	for j, l := range lines {
		f := strings.Split(l, "\t")
		f[i] = ""
		out[j] = strings.Join(f, "\t")
	}
	return out
}

func TestScaleByTag(t *testing.T) {
	h := newHarness(t)
	h.must("socket web host=127.0.0.1")
	h.must("socket web service=0")
	for _, n := range []string{"web001", "web002"} {
		h.declare(n, "sleep 1000", "tags=web", "sockets=web", "add_env=X=1")
	}
	h.declare("other", "sleep 1000")
	h.must("command start tag web")
	out := h.must("command scale tag web 5")
	if out[0] != "scaled web from 2 to 5: added web003 web004 web005" {
		t.Fatalf("scale up: %q", out)
	}
	for _, n := range []string{"web003", "web004", "web005"} {
		h.waitState(n, "running")
	}
	d3 := h.must("command dump service web003")
	d1 := h.must("command dump service web001")
	if strings.Join(d3, "\n") != strings.ReplaceAll(strings.Join(d1, "\n"), "web001", "web003") {
		t.Errorf("copy differs:\n%q\n%q", d1, d3)
	}
	out = h.must("command scale tag web 1")
	if out[0] != "scaled web from 5 to 1: removed web002 web003 web004 web005" {
		t.Fatalf("scale down: %q", out)
	}
	if got := h.must("command list"); !reflect.DeepEqual(got, []string{"other", "web001"}) {
		t.Fatalf("after scale down: %q", got)
	}
	h.mustFail("command scale tag nope 3", "no service is tagged 'nope': declare one to copy first")
	h.must("service odd cmd=sleep 1")
	h.must("service odd tags=web")
	h.mustFail("command scale tag web 3", "the services tagged 'web' are not named as one prefix and a number (like web001, web002): cannot scale")
	h.mustFail("command scale tag web x", "scale needs a number of services, not 'x'")
	_ = time.Second
}
