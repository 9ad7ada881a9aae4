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
	// Relative to cfkd's home; 500 lines, rotated at 8 KiB, two old
	// copies kept. One stream only: two pipes' lines interleave as they
	// are read, so which line is last would be a matter of luck.
	h.declare("chatty", helperCmd("print", "500"), "log_file=logs/chatty.log", "log_max_bytes=8K", "log_keep=2", "ignore_stderr=1")
	h.declare("quiet", helperCmd("print", "3"))
	h.declare("both", helperCmd("print", "3"), "log_file=both.log") // stdout and stderr
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
	defer func() {
		if t.Failed() {
			ents, _ := os.ReadDir(filepath.Join(h.dir, "logs"))
			for _, e := range ents {
				b, _ := os.ReadFile(filepath.Join(h.dir, "logs", e.Name()))
				t.Logf("%s: %d bytes, ends %q", e.Name(), len(b), string(b[max(0, len(b)-200):]))
			}
			t.Logf("cfkd log:\n%s", h.logText())
		}
	}()
	waitFor(t, 10*time.Second, "chatty's last lines", func() bool {
		s := read(path)
		return strings.HasSuffix(s, "service.chatty.out - out line 499\n")
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
	waitFor(t, 10*time.Second, "both streams in both.log", func() bool {
		s := read(filepath.Join(h.dir, "both.log"))
		return strings.Contains(s, "INFO service.both.out - out line 2") && strings.Contains(s, "ERROR service.both.err - err line 2")
	})
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

func TestProxiedServiceLogFile(t *testing.T) {
	h := newHarness(t)
	h.must("proxy p cmd=" + proxyWords("proxy"))
	h.must("proxy p service w cmd=" + helperCmd("print", "3"))
	h.must("service w log_file=w.log")
	h.must("service w startwait_secs=0.1")
	h.must("command start service w")
	path := filepath.Join(h.dir, "w.log")
	waitFor(t, 10*time.Second, "w's lines in its file", func() bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), "service.w.out - out line 2") && strings.Contains(string(b), "service.w.out - err line 2") // this proxy merges the streams
	})
	if strings.Contains(h.logText(), "service.w.") {
		t.Errorf("w's output reached cfkd's log:\n%s", h.logText())
	}
	if out := h.must("command logfile w"); out[0] != path {
		t.Errorf("logfile w: %q", out)
	}
}

// TestReopenLogsDuringShutdown: a SIGUSR1 as the loop ends must not leave
// cfkd's signal loop waiting for an answer that never comes.
func TestReopenLogsDuringShutdown(t *testing.T) {
	for i := 0; i < 10; i++ {
		h := newHarness(t)
		held := make(chan struct{})
		h.s.send(funcEvent{func() { <-held }}) // the loop is busy
		h.s.Shutdown()                         // queued behind the busy loop
		done := make(chan error, 1)
		go func() { done <- h.s.ReopenLogs() }()
		waitFor(t, 5*time.Second, "the reopen queued", func() bool { return len(h.s.events) >= 2 })
		close(held)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("ReopenLogs did not return after the loop ended (round %d)", i)
		}
	}
}
