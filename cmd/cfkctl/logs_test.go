package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func logLine(cat, msg string) string {
	return "2026-11-29T10:00:00.000Z 42 INFO " + cat + " - " + msg + "\n"
}

func TestLogsFilterAndTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfkd.log")
	var b strings.Builder
	for i := 0; i < 3000; i++ { // over one 64 KiB block
		b.WriteString(logLine("service.web1.out", fmt.Sprintf("GET /%d", i)))
		b.WriteString(logLine("service.web10.out", "not web1"))
	}
	b.WriteString(logLine("cfkd", "child web1 exited"))
	b.WriteString(logLine("cfkd", "Stopping service 'web1'"))
	b.WriteString(logLine("cfkd", "starting web10"))
	b.WriteString(logLine("service.web1.err", "oops"))
	b.WriteString("2026-11-29T10:00:00.000Z 42 INFO service.web1.out - half a li") // being written
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	answers := map[string]reply{
		"command logfile":             {body: []string{path}},
		"command logfile web1":        {body: []string{path}},
		"command status service web1": {body: []string{"web1\trunning\t1\t\t\t\t\t\t"}},
	}
	f := newFakeCfkd(t, answers)
	res := cfkctlAt(t, f, "logs", "web1", "-n", "4")
	want := logLine("service.web1.out", "GET /2999") + logLine("cfkd", "child web1 exited") +
		logLine("cfkd", "Stopping service 'web1'") + logLine("service.web1.err", "oops")
	if res.code != 0 || res.stdout != want {
		t.Fatalf("logs web1 -n 4: exit %d\n%q\nwant\n%q\n%s", res.code, res.stdout, want, res.stderr)
	}
	// Lines spread over blocks: the first web1 line of the file.
	res = cfkctlAt(t, newFakeCfkd(t, answers), "logs", "web1", "-n", "10000")
	got := strings.Split(strings.TrimRight(res.stdout, "\n"), "\n")
	if len(got) != 3003 || got[0] != strings.TrimSuffix(logLine("service.web1.out", "GET /0"), "\n") {
		t.Fatalf("all web1 lines: %d lines, first %q", len(got), got[0])
	}
	// No svcref: every line, the partial one left out.
	res = cfkctlAt(t, newFakeCfkd(t, answers), "logs", "-n", "2")
	if res.stdout != logLine("cfkd", "starting web10")+logLine("service.web1.err", "oops") {
		t.Fatalf("logs -n 2: %q", res.stdout)
	}
	// Services with files of their own: that file; two files: refused.
	own := filepath.Join(t.TempDir(), "web2.log")
	os.WriteFile(own, []byte(logLine("service.web2.out", "in its own file")), 0o600)
	twoFiles := map[string]reply{
		"command status tag web":      {body: []string{"web1\trunning\t1\t\t\t\t\t\t", "web2\trunning\t2\t\t\t\t\t\t"}},
		"command status service web2": {body: []string{"web2\trunning\t2\t\t\t\t\t\t"}},
		"command logfile web1":        {body: []string{path}},
		"command logfile web2":        {body: []string{own}},
	}
	res = cfkctlAt(t, newFakeCfkd(t, twoFiles), "logs", "web2")
	if res.code != 0 || res.stdout != logLine("service.web2.out", "in its own file") {
		t.Fatalf("logs web2: exit %d %q %s", res.code, res.stdout, res.stderr)
	}
	res = cfkctlAt(t, newFakeCfkd(t, twoFiles), "logs", "@web")
	if res.code != 1 || !strings.Contains(res.stderr, "web1: "+path) || !strings.Contains(res.stderr, "web2: "+own) {
		t.Fatalf("logs @web over two files: exit %d %s", res.code, res.stderr)
	}
	// A log that is not here.
	res = cfkctlAt(t, newFakeCfkd(t, map[string]reply{"command logfile": {body: []string{"/nonexistent/cfkd.log"}}}), "logs")
	if res.code != 1 || !strings.Contains(res.stderr, "is cfkctl on cfkd's machine?") {
		t.Fatalf("missing log: exit %d %s", res.code, res.stderr)
	}
}

func TestLogsFollowAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cfkd.log")
	os.WriteFile(path, []byte(logLine("service.w.out", "old")), 0o600)
	f := newFakeCfkd(t, map[string]reply{
		"command logfile w":        {body: []string{path}},
		"command status service w": {body: []string{"w\trunning\t1\t\t\t\t\t\t"}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "--address", f.address(), "logs", "w", "-f", "-n", "1")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "GORACE=atexit_sleep_ms=0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := bufio.NewScanner(out)
	next := func() string {
		if !lines.Scan() {
			t.Fatalf("cfkctl logs -f ended: %v", lines.Err())
		}
		return lines.Text()
	}
	expect := func(msg string) {
		t.Helper()
		if got := next(); !strings.HasSuffix(got, " - "+msg) {
			t.Fatalf("got %q, want the line %q", got, msg)
		}
	}
	expect("old")
	appendTo := func(p, s string) {
		fh, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		fh.WriteString(s)
		fh.Close()
	}
	appendTo(path, logLine("service.other.out", "skip")+logLine("service.w.out", "new 1"))
	expect("new 1")
	// A line written in two pieces comes out whole.
	appendTo(path, "2026-11-29T10:00:00.000Z 42 INFO service.w.out - in two")
	time.Sleep(2 * logPoll) // let the follower see the first half alone
	appendTo(path, " pieces\n")
	expect("in two pieces")
	// logrotate: rename, the old file gets a last line, a new file appears.
	os.Rename(path, path+".1")
	appendTo(path+".1", logLine("service.w.out", "last of the old file"))
	// The new file is already longer than the old one was: only its
	// identity tells it is another file.
	appendTo(path, strings.Repeat(logLine("service.other.out", "skip"), 200)+logLine("service.w.out", "first of the new file"))
	expect("last of the old file")
	expect("first of the new file")
	// Truncation in place.
	os.WriteFile(path, []byte(logLine("service.w.out", "after truncation")), 0o600)
	expect("after truncation")
}

// TestLastLinesAgainstSplit compares lastLines with the obvious reading of
// the whole file, for lines of every size around the 64 KiB block
// (one of 200 KiB), with and without a partial last line.
func TestLastLinesAgainstSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for round := 0; round < 30; round++ {
		var lines []string
		for i := 0; i < 40; i++ {
			size := rng.IntN(3000)
			switch rng.IntN(10) {
			case 0:
				size = 64<<10 - 1 + rng.IntN(3) // around a block
			case 1:
				size = 200 << 10
			}
			lines = append(lines, strings.Repeat(string(rune('a'+i%26)), size)+fmt.Sprint(i))
		}
		content := strings.Join(lines, "\n") + "\n"
		partial := round%2 == 1
		if partial {
			content += "being written"
		}
		path := filepath.Join(t.TempDir(), "log")
		os.WriteFile(path, []byte(content), 0o600)
		f, _ := os.Open(path)
		for _, n := range []int{0, 1, 5, 39, 40, 100} {
			got, end, err := lastLines(f, n, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := lines[max(0, len(lines)-n):]
			if len(got) != len(want) {
				t.Fatalf("round %d n %d: %d lines, want %d", round, n, len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("round %d n %d line %d: %d bytes, want %d", round, n, i, len(got[i]), len(want[i]))
				}
			}
			if wantEnd := int64(len(strings.Join(lines, "\n")) + 1); end != wantEnd {
				t.Fatalf("round %d n %d: end %d, want %d", round, n, end, wantEnd)
			}
		}
		f.Close()
	}
	// A huge line costs its length, not its square: 32 MiB in one line.
	path := filepath.Join(t.TempDir(), "huge")
	os.WriteFile(path, []byte(strings.Repeat("x", 32<<20)+"\n"), 0o600)
	f, _ := os.Open(path)
	defer f.Close()
	got, _, err := lastLines(f, 1, nil)
	if err != nil || len(got) != 1 || len(got[0]) != 32<<20 {
		t.Fatalf("huge line: %d lines, %v", len(got), err)
	}
}
