package eventlog

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func TestFormatReopenAndOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfkd.log")
	l, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Infof("hello %d", 1)
	l.Write(Error, "service.w.err", 4242, "oops")
	l.Sync()
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		t.Fatalf("log: %q", b)
	}
	re := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\S* (-|\d+) (INFO|ERROR) \S+ - .*$`)
	for _, l := range lines {
		if !re.MatchString(l) {
			t.Errorf("line %q does not match the format", l)
		}
	}
	if !strings.HasSuffix(lines[1], " 4242 ERROR service.w.err - oops") {
		t.Errorf("service line %q", lines[1])
	}

	// logrotate: rename, then reopen; new lines go to a new file.
	os.Rename(path, path+".1")
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Infof("after")
	l.Sync()
	b, _ = os.ReadFile(path)
	if !strings.Contains(string(b), "cfkd - after") || strings.Contains(string(b), "hello") {
		t.Errorf("new file: %q", b)
	}

	// Many writers: every line arrives whole, none lost.
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				l.Write(Info, "service.x.out", 1, strings.Repeat("y", 100))
			}
		}()
	}
	wg.Wait()
	l.Sync()
	b, _ = os.ReadFile(path)
	if n := strings.Count(string(b), "service.x.out - "+strings.Repeat("y", 100)+"\n"); n != 8000 {
		t.Errorf("%d whole lines of 8000", n)
	}
}

func TestLogNeverBlocks(t *testing.T) {
	// With no reader draining fast enough Log drops and counts; it must
	// return at once even far past the queue's size.
	l, err := Open(filepath.Join(t.TempDir(), "x.log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 10*queueLen; i++ {
		l.Log(Info, "cfkd", 0, "burst")
	}
	l.Sync()
}
