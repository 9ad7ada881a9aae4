package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServiceLogFile(t *testing.T) {
	h := newHarness(t)
	// Relative to cfkd's home; 500 lines on each stream, rotated at 8 KiB,
	// two old copies kept.
	h.declare("chatty", helperCmd("print", "500"), "log_file=logs/chatty.log", "log_max_bytes=8K", "log_keep=2")
	h.declare("quiet", helperCmd("print", "3"))
	if err := os.MkdirAll(filepath.Join(h.dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.must("command start all")
	path := filepath.Join(h.dir, "logs", "chatty.log")
	if out := h.must("command logfile chatty"); len(out) != 1 || out[0] != path {
		t.Fatalf("logfile chatty: %q", out)
	}
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	// The last line of each stream ends in the newest file.
	waitFor(t, 10*time.Second, "chatty's last lines", func() bool {
		s := read(path)
		return strings.Contains(s, "service.chatty.out - out line 499") && strings.Contains(s, "service.chatty.err - err line 499")
	})
	for _, p := range []string{path, path + ".1", path + ".2"} {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if info.Size() > 8<<10 {
			t.Errorf("%s is %d bytes, over 8 KiB", p, info.Size())
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("a third copy was kept")
	}
	// chatty's output is not in cfkd's log; quiet's is, and so are the
	// daemon's lines about chatty.
	waitFor(t, 10*time.Second, "quiet's output in cfkd's log", func() bool {
		return strings.Contains(h.logText(), "service.quiet.out - out line 2")
	})
	if log := h.logText(); strings.Contains(log, "service.chatty.") || !strings.Contains(log, "starting chatty") {
		t.Errorf("cfkd's log and chatty:\n%s", log)
	}
	// dump keeps the settings; bad values are refused.
	dump := strings.Join(h.must("command dump service chatty"), "\n")
	for _, want := range []string{"service chatty log_file=logs/chatty.log", "service chatty log_max_bytes=8192", "service chatty log_keep=2"} {
		if !strings.Contains(dump, want) {
			t.Errorf("dump lacks %q:\n%s", want, dump)
		}
	}
	h.mustFail("service chatty log_max_bytes=lots", "invalid value")
	h.mustFail("service chatty log_keep=-1", "invalid value")
	h.mustFail("service chatty log_file=logs/", "invalid value")
	// Without a log_file a service's file is cfkd's log, which this
	// harness does not name.
	h.mustFail("command logfile quiet", "cfkd has no log file")
	h.mustFail("command logfile nosuch", errNoService.Error())
}

func TestServiceLogFileCannotOpen(t *testing.T) {
	h := newHarness(t)
	h.declare("lost", helperCmd("print", "2"), "log_file=/nonexistent/dir/lost.log")
	h.must("command start service lost")
	// The output is not lost: it goes to cfkd's log, which says why.
	waitFor(t, 10*time.Second, "the fallback", func() bool {
		log := h.logText()
		return strings.Contains(log, "service.lost.out - out line 1") &&
			strings.Contains(log, "/nonexistent/dir/lost.log") && strings.Contains(log, "its output goes to cfkd's log")
	})
}
