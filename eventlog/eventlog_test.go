package eventlog

import (
	"fmt"
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

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "svc.log")
	l, err := OpenRotating(path, 1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("x", 60) // about 110 bytes a line with the prefix
	for i := 0; i < 40; i++ {
		l.Write(Info, "service.w.out", 7, fmt.Sprintf("%s %02d", msg, i))
	}
	l.Close()
	var all []string
	for _, p := range []string{path + ".2", path + ".1", path} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(b) > 1000 {
			t.Errorf("%s is %d bytes, over the 1000 limit", p, len(b))
		}
		all = append(all, strings.Split(strings.TrimRight(string(b), "\n"), "\n")...)
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("a third old copy was kept: %v", err)
	}
	// The kept lines are the last ones, in order, none torn.
	last := all[len(all)-1]
	if !strings.HasSuffix(last, msg+" 39") {
		t.Fatalf("last line %q", last)
	}
	for i := 1; i < len(all); i++ {
		var a, b int
		fmt.Sscanf(all[i-1][len(all[i-1])-2:], "%d", &a)
		fmt.Sscanf(all[i][len(all[i])-2:], "%d", &b)
		if b != a+1 {
			t.Fatalf("lines out of order or lost between %q and %q", all[i-1], all[i])
		}
	}
	// Reopening an existing file counts its size.
	l, _ = OpenRotating(path, 1000, 2)
	before, _ := os.Stat(path)
	for i := 0; i < 10; i++ {
		l.Write(Info, "service.w.out", 7, msg)
	}
	l.Close()
	after, _ := os.Stat(path)
	if after.Size() > 1000 || os.SameFile(before, after) && after.Size() < before.Size() {
		t.Errorf("after reopen: %d bytes (was %d)", after.Size(), before.Size())
	}
}

func TestRotationKeepZero(t *testing.T) {
	path := filepath.Join(t.TempDir(), "svc.log")
	l, _ := OpenRotating(path, 300, 0)
	for i := 0; i < 20; i++ {
		l.Write(Info, "service.w.out", 7, strings.Repeat("y", 50))
	}
	l.Close()
	if _, err := os.Stat(path + ".1"); !os.IsNotExist(err) {
		t.Errorf("keep 0 kept a copy")
	}
	if info, err := os.Stat(path); err != nil || info.Size() > 300 {
		t.Errorf("file: %v %v", info, err)
	}
}

// TestLogDuringClose: events logged while the logger closes are dropped,
// never a send on a closed queue (a panic).
func TestLogDuringClose(t *testing.T) {
	for i := 0; i < 50; i++ {
		l, err := Open(filepath.Join(t.TempDir(), "x.log"), nil)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 200; j++ {
					l.Log(Info, "cfkd", 0, "x")
					l.Write(Info, "service.a.out", 1, "y")
				}
			}()
		}
		l.Close()
		wg.Wait()
	}
}
