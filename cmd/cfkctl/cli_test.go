package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// done answers a service action that was accepted for n services.
func done(n int) reply { return reply{body: []string{fmt.Sprintf("done %d", n)}} }

const noService = "Couldn't find a valid service. bailing."

func TestRefsBecomeSelectors(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"status", "@web"}, []string{"command status tag web"}},
		{[]string{"status"}, []string{"command status all"}},
		{[]string{"up"}, []string{"command up all"}},
		{[]string{"down", "s1"}, []string{"command down service s1"}},
		{[]string{"restart", "s1", "@web", "s2"}, []string{
			"command restart service s1", "command restart tag web", "command restart service s2"}},
		{[]string{"stop", "s1", "all"}, []string{"command stop all"}},
		{[]string{"start", "s1"}, []string{"command start service s1"}},
		{[]string{"destroy", "-y", "s1"}, []string{"command destroy service s1"}},
		{[]string{"pids", "@db"}, []string{"command pids tag db"}},
		{[]string{"desc"}, []string{"command desc all"}},
		{[]string{"list"}, []string{"command list"}},
		{[]string{"version"}, []string{"command version"}},
		{[]string{"proxystatus"}, []string{"command proxystatus"}},
		{[]string{"proxyup", "orig"}, []string{"command proxyup orig"}},
		{[]string{"proxydown", "orig"}, []string{"command proxydown orig"}},
		{[]string{"pid", "s1"}, []string{"command status service s1"}},
		{[]string{"sockets"}, []string{"command sockets"}},
		{[]string{"mem", "@web"}, []string{"command mem tag web"}},
		{[]string{"dump"}, []string{"command dump all"}},
		{[]string{"scale", "@web", "8"}, []string{"command scale tag web 8"}},
		{[]string{"sockets", "web"}, []string{"command sockets web"}},
		{[]string{"bind", "web"}, []string{"command bind web"}},
		{[]string{"unbind", "web"}, []string{"command unbind web"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			answers := map[string]reply{}
			for _, w := range tt.want {
				answers[w] = reply{}
			}
			answers["command status service s1"] = reply{body: []string{"s1\trunning\t42\t1\t\t\t\t"}}
			f := newFakeCfkd(t, answers)
			res := cfkctlAt(t, f, tt.args...)
			if res.code != 0 {
				t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
			}
			if got := f.requests(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("sent %q, want %q", got, tt.want)
			}
			// cfkctl says `exit` and hangs up.
			f.waitClosed(1)
		})
	}
}

func TestServiceActions(t *testing.T) {
	f := newFakeCfkd(t, map[string]reply{
		"command up service s1":  done(1),
		"command up tag web":     done(3),
		"command up service bad": {err: noService},
	})

	res := cfkctlAt(t, f, "up", "s1", "@web")
	if res.code != 0 || res.stdout != "done 1\ndone 3\n" || res.stderr != "" {
		t.Errorf("up s1 @web: %+v", res)
	}

	// An ERROR for one ref is reported, the others are still tried, and the
	// exit status says something failed.
	res = cfkctlAt(t, f, "up", "bad", "s1")
	if res.code != 1 {
		t.Errorf("exit %d, want 1", res.code)
	}
	if res.stdout != "done 1\n" {
		t.Errorf("stdout %q", res.stdout)
	}
	if want := "error: " + noService + "\n"; res.stderr != want {
		t.Errorf("stderr %q, want %q", res.stderr, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "cfk.conf")
	content := "# a comment\n" +
		"\n" +
		"service s1 cmd=${BASE}/bin/s1 --root ${BASE}\r\n" +
		"   # an indented comment\n" +
		"   \t\n" +
		"service s1 tags=web\n" +
		"command up service s1\n"
	if err := os.WriteFile(conf, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"service s1 cmd=/srv/app/bin/s1 --root /srv/app",
		"service s1 tags=web",
		"command up service s1",
	}
	answers := map[string]reply{
		want[0]: {}, want[1]: {}, want[2]: done(1),
	}

	t.Run("file", func(t *testing.T) {
		f := newFakeCfkd(t, answers)
		res := cfkctlAt(t, f, "--basedir", "/srv/app", "load", conf)
		if res.code != 0 || res.stdout != "" || res.stderr != "" {
			t.Errorf("load: %+v", res)
		}
		if got := f.requests(); !reflect.DeepEqual(got, want) {
			t.Errorf("sent %q, want %q", got, want)
		}
	})

	t.Run("stdin verbose", func(t *testing.T) {
		f := newFakeCfkd(t, answers)
		res := cfkctl(t, invocation{
			args:  []string{"-a", f.address(), "--basedir=/srv/app", "load", "-v", "-"},
			stdin: content,
		})
		if res.code != 0 || res.stdout != "stdin: 3 lines loaded\n" {
			t.Errorf("load -: %+v", res)
		}
		if got := f.requests(); !reflect.DeepEqual(got, want) {
			t.Errorf("sent %q, want %q", got, want)
		}
	})

	t.Run("basedir defaults to the working directory", func(t *testing.T) {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		line := "service s1 cmd=" + wd + "/run"
		f := newFakeCfkd(t, map[string]reply{line: {}})
		res := cfkctl(t, invocation{args: []string{"-a", f.address(), "load", "-"}, stdin: "service s1 cmd=${BASE}/run\n"})
		if res.code != 0 {
			t.Fatalf("load: %+v", res)
		}
		if got := f.requests(); !reflect.DeepEqual(got, []string{line}) {
			t.Errorf("sent %q", got)
		}
	})

	t.Run("stops at the first error", func(t *testing.T) {
		f := newFakeCfkd(t, map[string]reply{
			want[0]: {},
			want[1]: {err: "invalid property 'tags'"},
			want[2]: done(1),
		})
		res := cfkctlAt(t, f, "--basedir", "/srv/app", "load", conf)
		if res.code != 1 {
			t.Errorf("exit %d, want 1", res.code)
		}
		// Line 6 of the file: comments and blank lines count.
		if w := "error: " + conf + ":6: invalid property 'tags'\n"; res.stderr != w {
			t.Errorf("stderr %q, want %q", res.stderr, w)
		}
		if got := f.requests(); !reflect.DeepEqual(got, want[:2]) {
			t.Errorf("sent %q, want %q", got, want[:2])
		}
	})

	t.Run("missing file", func(t *testing.T) {
		res := cfkctl(t, invocation{args: []string{"-a", "unix:/nonexistent/sock", "load", filepath.Join(dir, "nope")}})
		if res.code != 1 || !strings.Contains(res.stderr, "cannot load") {
			t.Errorf("load nope: %+v", res)
		}
	})
}

// statusLine builds a `command status` answer line.
func statusLine(name, state, pid string, start, stop int64, proxy, reason string) string {
	ts := func(v int64) string {
		if v == 0 {
			return ""
		}
		return strconv.FormatInt(v, 10)
	}
	return strings.Join([]string{name, state, pid, ts(start), ts(stop), proxy, reason, ""}, "\t")
}

func TestStatus(t *testing.T) {
	now := time.Now().Unix()
	// A few seconds of slack on each, so that the test's own run time
	// cannot push an age into the next unit.
	webStart := now - 5*60 - 5
	dbStart, dbStop := now-4*3600, now-3*3600-30
	w2Start := now - 2*60 - 5
	web := statusLine("web", "running", "100", webStart, 0, "", "")
	db := statusLine("db", "fail", "", dbStart, dbStop, "", "Exited with error 3")
	idle := statusLine("idle", "stopped", "", 0, 0, "", "")
	w2 := statusLine("w2", "starting", "101", w2Start, 0, "orig!", "")
	f := newFakeCfkd(t, map[string]reply{
		"command status service web": {body: []string{web}},
		"command status tag back":    {body: []string{db, web, idle, w2}},
		"command status service x":   {err: noService},
	})

	date := func(v int64) string { return time.Unix(v, 0).UTC().Format(time.ANSIC) }
	want := fmt.Sprintf("running  web                  %15s (%s)\n", "5 minutes ago", date(webStart)) +
		fmt.Sprintf("fail     db                   %15s (%s)  Exited with error 3\n", "3 hours ago", date(dbStop)) +
		"stopped  idle\n" +
		fmt.Sprintf("starting w2                   %15s (%s) [proxy orig (down)]\n", "2 minutes ago", date(w2Start))

	res := cfkctlAt(t, f, "status", "web", "@back")
	if res.code != 0 || res.stderr != "" {
		t.Fatalf("status: %+v", res)
	}
	// Piped: no colour. web comes once, where cfkd first named it.
	if res.stdout != want {
		t.Errorf("status output:\n%s\nwant:\n%s", res.stdout, want)
	}

	// An ERROR for one ref: the rest is still shown, the exit status is 1.
	res = cfkctlAt(t, f, "status", "x", "web")
	if res.code != 1 || res.stderr != "error: "+noService+"\n" || !strings.HasPrefix(res.stdout, "running  web ") {
		t.Errorf("status x web: %+v", res)
	}
}

func TestPidsDescProxystatus(t *testing.T) {
	f := newFakeCfkd(t, map[string]reply{
		"command pids all":        {body: []string{"s1: 100", "s_orig: 90, 101", "s2: "}},
		"command pids service s1": {body: []string{"s1: 100"}},
		"command desc all": {body: []string{
			"s1\tweb, front\tthe \"main\" site\t\tplackup app.psgi",
			"s2\t\t\t\t",
			"s_orig\t\t\torig\tworker.pl",
		}},
		"command proxystatus": {body: []string{"orig\tup\t90", "other\tdown\t"}},
	})
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"pids", "all"}, "s1: 100\ns_orig: 90, 101\ns2: \n"},
		{[]string{"pids", "s1", "all"}, "s1: 100\ns_orig: 90, 101\ns2: \n"},
		{[]string{"desc"}, `s1: tags="web, front" desc="the \"main\" site" cmd="plackup app.psgi"` + "\n" +
			"s2:\n" +
			`s_orig: proxy="orig" cmd="worker.pl"` + "\n"},
		{[]string{"proxystatus"}, "up     orig                     90\ndown   other\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			res := cfkctlAt(t, f, tt.args...)
			if res.code != 0 || res.stdout != tt.want {
				t.Errorf("got %+v\nwant stdout %q", res, tt.want)
			}
		})
	}
}

func TestPid(t *testing.T) {
	f := newFakeCfkd(t, map[string]reply{
		"command status service up":   {body: []string{statusLine("up", "running", "4242", 1, 0, "", "")}},
		"command status service down": {body: []string{statusLine("down", "stopped", "", 1, 2, "", "")}},
		"command status service gone": {err: noService},
	})
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"pid", "up"}, 0, "4242\n", ""},
		{[]string{"pid", "down"}, 1, "", "cfkctl: service 'down' has no pid (it is stopped)\n"},
		{[]string{"pid", "gone"}, 1, "", "error: " + noService + "\n"},
		{[]string{"pid"}, 2, "", "cfkctl pid: accepts 1 arg(s), received 0\n"},
		{[]string{"pid", "@web"}, 2, "", "cfkctl pid: takes a service name, not \"@web\"\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			res := cfkctlAt(t, f, tt.args...)
			if res.code != tt.code || res.stdout != tt.stdout || !strings.HasPrefix(res.stderr, tt.stderr) {
				t.Errorf("got %+v, want exit %d stdout %q stderr %q", res, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	// cfkd may hang up before its OK reaches us: that is a success.
	f := newFakeCfkd(t, map[string]reply{"command shutdown": {hangup: true}})
	res := cfkctlAt(t, f, "shutdown")
	if res.code != 0 || res.stdout != "" || res.stderr != "" {
		t.Errorf("shutdown: %+v", res)
	}
	if got := f.requests(); !reflect.DeepEqual(got, []string{"command shutdown"}) {
		t.Errorf("sent %q", got)
	}
}

func TestNotRunning(t *testing.T) {
	home := t.TempDir()
	tests := []struct {
		name string
		inv  invocation
		addr string
	}{
		{"address flag", invocation{args: []string{"--address", "unix:" + home + "/x.sock", "status"}}, "unix:" + home + "/x.sock"},
		{"home flag", invocation{args: []string{"--home", home, "status"}}, "unix:" + home + "/sock"},
		{"CFKD_HOME", invocation{args: []string{"up"}, env: []string{"CFKD_HOME=" + home}}, "unix:" + home + "/sock"},
		{"CFKD_ADDRESS", invocation{args: []string{"list"}, env: []string{"CFKD_ADDRESS=" + home + "/a.sock", "CFKD_HOME=/elsewhere"}}, home + "/a.sock"},
		{"flag beats env", invocation{args: []string{"-a", home + "/b.sock", "list"}, env: []string{"CFKD_ADDRESS=" + home + "/a.sock"}}, home + "/b.sock"},
		{"HOME", invocation{args: []string{"status"}, env: []string{"HOME=" + home}}, "unix:" + home + "/.controlfreak/sock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := cfkctl(t, tt.inv)
			want := "cfkctl: cannot connect to cfkd at " + tt.addr + ": no such file or directory\n" +
				"Is cfkd running? (start it with: cfkd)\n"
			if res.code != 2 || res.stderr != want || res.stdout != "" {
				t.Errorf("got %+v\nwant exit 2, stderr %q", res, want)
			}
		})
	}

	t.Run("refused", func(t *testing.T) {
		// A socket file that nobody listens on any more.
		path := filepath.Join(home, "dead.sock")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close()
		res := cfkctl(t, invocation{args: []string{"-a", path, "status"}})
		want := "cfkctl: cannot connect to cfkd at " + path + ": connection refused\n"
		if res.code != 2 || !strings.HasPrefix(res.stderr, want) {
			t.Errorf("got %+v, want exit 2 and %q", res, want)
		}
	})
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "cfkctl: no command given"},
		{[]string{"frobnicate"}, `cfkctl: unknown command "frobnicate" for "cfkctl"`},
		{[]string{"stauts"}, "Did you mean this?"},
		{[]string{"status", "--bogus"}, "cfkctl status: unknown flag: --bogus"},
		{[]string{"status", "@"}, `cfkctl status: invalid service reference "@"`},
		{[]string{"up", "a b"}, `cfkctl up: invalid service reference "a b"`},
		{[]string{"load"}, "cfkctl load: accepts 1 arg(s), received 0"},
		{[]string{"proxyup"}, "cfkctl proxyup: accepts 1 arg(s), received 0"},
		{[]string{"list", "x"}, `cfkctl list: unknown command "x"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			res := cfkctl(t, invocation{args: tt.args})
			if res.code != 2 || !strings.Contains(res.stderr, tt.want) {
				t.Errorf("got %+v, want exit 2 and %q", res, tt.want)
			}
		})
	}
}

func TestCompletion(t *testing.T) {
	res := cfkctl(t, invocation{args: []string{"completion", "bash"}})
	if res.code != 0 || !strings.Contains(res.stdout, "cfkctl") || len(res.stdout) < 1000 {
		t.Errorf("completion bash: exit %d, %d bytes, stderr %q", res.code, len(res.stdout), res.stderr)
	}

	// Arguments complete from what cfkd knows.
	f := newFakeCfkd(t, map[string]reply{
		"command desc all": {body: []string{"s1\tweb, front\t\t\tx", "s2\tweb\t\t\ty"}},
		"command list":     {body: []string{"s1", "s2"}},
	})
	res = cfkctlAt(t, f, "__complete", "status", "")
	for _, w := range []string{"all\n", "s1\n", "s2\n", "@web\n", "@front\n"} {
		if !strings.Contains(res.stdout, w) {
			t.Errorf("status completion lacks %q:\n%s", w, res.stdout)
		}
	}
	res = cfkctlAt(t, f, "__complete", "pid", "")
	if !strings.HasPrefix(res.stdout, "s1\ns2\n") {
		t.Errorf("pid completion:\n%s", res.stdout)
	}
}

func TestSocketsTable(t *testing.T) {
	f := newFakeCfkd(t, map[string]reply{"command sockets": {body: []string{
		"web\t127.0.0.1:8080\tbound\t7\tw1,w2\t3\t128",
		"admin\tunix:/tmp/a.sock\tunbound\t\t\t\t",
	}}})
	res := cfkctlAt(t, f, "sockets")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	lines := strings.Split(strings.TrimRight(res.stdout, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("output %q", res.stdout)
	}
	for _, want := range []string{"web", "127.0.0.1:8080", "bound", "3/128", "w1, w2"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row %q lacks %q", lines[1], want)
		}
	}
	if !strings.Contains(lines[2], "unbound") || strings.Contains(lines[2], "/ ") {
		t.Errorf("unbound row %q", lines[2])
	}
}

func TestMemTableAndJSON(t *testing.T) {
	answers := map[string]reply{"command mem all": {body: []string{
		"service\tw1\t10\t20480\t5120\t4096\t1",
		"proxy\tp\t9\t204800\t102400\t1024\t1",
		"service\tw2\t\t0\t0\t0\t0",
	}}}
	f := newFakeCfkd(t, answers)
	res := cfkctlAt(t, f, "mem")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	lines := strings.Split(strings.TrimRight(res.stdout, "\n"), "\n")
	if len(lines) != 5 || !strings.Contains(lines[1], "20M") || !strings.HasPrefix(lines[4], "total") || !strings.Contains(lines[4], "105M") {
		t.Fatalf("table:\n%s", res.stdout)
	}
	f2 := newFakeCfkd(t, answers)
	res = cfkctlAt(t, f2, "mem", "--json")
	var got struct {
		Rows  []map[string]any `json:"rows"`
		Total map[string]any   `json:"total"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
		t.Fatalf("json: %v\n%s", err, res.stdout)
	}
	if len(got.Rows) != 3 || got.Total["pss_kib"] != 107520.0 {
		t.Fatalf("json: %+v", got)
	}
}

func TestRollingRestartFollowsProgress(t *testing.T) {
	f := newFakeCfkd(t, map[string]reply{
		"command rollrestart tag web 2": {body: []string{"rolling restart 7: 4 services in batches of 2"}},
		"command rollstatus 7":          {body: []string{"7\tdone\t4/4\trestarted 4 services in 1.00s"}},
	})
	res := cfkctlAt(t, f, "restart", "@web", "--rolling", "--batch", "2")
	if res.code != 0 || !strings.Contains(res.stdout, "[4/4] restarted 4 services") {
		t.Fatalf("exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	failed := newFakeCfkd(t, map[string]reply{
		"command rollrestart tag web 1": {body: []string{"rolling restart 1: 2 services in batches of 1"}},
		"command rollstatus 1":          {body: []string{"1\tfailed\t0/2\tw1 failed to start"}},
	})
	res = cfkctlAt(t, failed, "restart", "@web", "--rolling")
	if res.code != 1 || !strings.Contains(res.stderr, "rolling restart stopped: w1 failed to start") {
		t.Fatalf("exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	usage := newFakeCfkd(t, nil)
	if res = cfkctlAt(t, usage, "restart", "a", "b", "--rolling"); res.code != 2 {
		t.Fatalf("two refs with --rolling: exit %d", res.code)
	}
	if res = cfkctlAt(t, usage, "restart", "@web", "--overlap"); res.code != 2 || !strings.Contains(res.stderr, "--overlap needs --rolling") {
		t.Fatalf("--overlap without --rolling: exit %d\n%s", res.code, res.stderr)
	}
	overlap := newFakeCfkd(t, map[string]reply{
		"command rollrestart tag web 1 overlap": {body: []string{"rolling restart 2: 2 services in batches of 1, each new process beside the old one"}},
		"command rollstatus 2":                  {body: []string{"2\tdone\t2/2\trestarted 2 services in 0.20s"}},
	})
	if res = cfkctlAt(t, overlap, "restart", "@web", "--rolling", "--overlap"); res.code != 0 || !strings.Contains(res.stdout, "beside the old one") {
		t.Fatalf("--overlap: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
}

func TestStatusAndSocketsJSON(t *testing.T) {
	f := newFakeCfkd(t, map[string]reply{
		"command status all": {body: []string{
			"web1\trunning\t4242\t1764400000\t\t\t\t/usr/bin/worker\tserving",
			"web2\tfail\t\t1764400000\t1764400100.5\torig!\tExited with error 3\t\t",
		}},
		"command sockets": {body: []string{
			"web\t127.0.0.1:8080\tbound\t7\tweb1,web2\t3\t4096",
			"admin\t[::1]:9000\tunbound\t\t\t\t",
		}},
	})
	res := cfkctlAt(t, f, "status", "--json")
	var st []map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || res.code != 0 {
		t.Fatalf("status --json: exit %d, %v\n%s%s", res.code, err, res.stdout, res.stderr)
	}
	if len(st) != 2 || st[0]["pid"] != 4242.0 || st[0]["status"] != "serving" || st[0]["cmd"] != "/usr/bin/worker" ||
		st[0]["started_at"] != "2025-11-29T07:06:40Z" || st[0]["stopped_at"] != nil {
		t.Errorf("running service: %v", st[0])
	}
	if st[1]["pid"] != nil || st[1]["proxy"] != "orig" || st[1]["proxy_down"] != true ||
		st[1]["fail_reason"] != "Exited with error 3" || st[1]["stopped_at"] != "2025-11-29T07:08:20.5Z" {
		t.Errorf("failed service: %v", st[1])
	}
	res = cfkctlAt(t, f, "sockets", "--json")
	var so []map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &so); err != nil || res.code != 0 {
		t.Fatalf("sockets --json: exit %d, %v\n%s%s", res.code, err, res.stdout, res.stderr)
	}
	if len(so) != 2 || so[0]["fd"] != 7.0 || so[0]["queue"] != 3.0 || so[0]["queue_limit"] != 4096.0 ||
		len(so[0]["services"].([]any)) != 2 {
		t.Errorf("bound socket: %v", so[0])
	}
	if so[1]["queue"] != nil || so[1]["fd"] != nil || len(so[1]["services"].([]any)) != 0 || so[1]["state"] != "unbound" {
		t.Errorf("unbound socket: %v", so[1])
	}
}

func TestPidsDescProxyJSON(t *testing.T) {
	f := newFakeCfkd(t, map[string]reply{
		"command status all": {body: []string{"s1\trunning\t100\t\t\t\t\t\t", "s_orig\trunning\t101\t\t\torig\t\t\t",
			"s2\tstopped\t\t\t\t\t\t\t", "s3\tstopped\t\t\t\torig\t\t\t"}},
		"command desc all":    {body: []string{"s1\tweb,db\tfront \"end\"\t\t/bin/w\tready", "s2\t\t\torig\t\t"}},
		"command proxystatus": {body: []string{"orig\tup\t90", "spare\tdown\t"}},
	})
	var pids []map[string]any
	res := cfkctlAt(t, f, "pids", "--json")
	if err := json.Unmarshal([]byte(res.stdout), &pids); err != nil || len(pids) != 4 {
		t.Fatalf("pids --json: %v\n%s%s", err, res.stdout, res.stderr)
	}
	// s3: proxied, stopped, its proxy up: no pid, the proxy's pid.
	if pids[0]["pid"] != 100.0 || pids[1]["proxy_pid"] != 90.0 || pids[1]["pid"] != 101.0 || pids[2]["pid"] != nil || pids[2]["name"] != "s2" ||
		pids[3]["pid"] != nil || pids[3]["proxy_pid"] != 90.0 {
		t.Errorf("pids: %v", pids)
	}
	var desc []map[string]any
	res = cfkctlAt(t, f, "desc", "--json")
	if err := json.Unmarshal([]byte(res.stdout), &desc); err != nil || len(desc) != 2 {
		t.Fatalf("desc --json: %v\n%s%s", err, res.stdout, res.stderr)
	}
	if len(desc[0]["tags"].([]any)) != 2 || desc[0]["desc"] != `front "end"` || desc[0]["cmd"] != "/bin/w" || desc[0]["status"] != "ready" ||
		desc[1]["proxy"] != "orig" || len(desc[1]["tags"].([]any)) != 0 || desc[1]["cmd"] != nil {
		t.Errorf("desc: %v", desc)
	}
	var px []map[string]any
	res = cfkctlAt(t, f, "proxystatus", "--json")
	if err := json.Unmarshal([]byte(res.stdout), &px); err != nil || len(px) != 2 {
		t.Fatalf("proxystatus --json: %v\n%s%s", err, res.stdout, res.stderr)
	}
	if px[0]["status"] != "up" || px[0]["pid"] != 90.0 || px[1]["status"] != "down" || px[1]["pid"] != nil {
		t.Errorf("proxystatus: %v", px)
	}
}
