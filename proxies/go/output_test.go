package cfkproxy

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/controlfreak-go/cfk/internal/cfkdtest"
)

// pipeWriterOn returns a pipeWriter on a fresh pipe and the read end.
func pipeWriterOn(t *testing.T, maxBytes int) (*pipeWriter, *os.File) {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	w, err := newPipeWriter(fds[1], "test pipe", maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	r := os.NewFile(uintptr(fds[0]), "test pipe reader")
	t.Cleanup(func() { r.Close(); w.f.Close() })
	return w, r
}

// Nobody reads the pipe: put must still return at once; log lines beyond
// the bound are dropped and said to be once the reader catches up.
func TestLogWriterDropsWhenCfkdDoesNotRead(t *testing.T) {
	w, r := pipeWriterOn(t, 64<<10)
	line := []byte(strings.Repeat("x", 1000) + "\n")
	start := time.Now()
	accepted := 0
	for range 1000 { // 1 MB: far more than the pipe and the queue hold
		if w.put(line) {
			accepted++
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("1000 puts to a pipe nobody reads took %v", d)
	}
	if accepted == 1000 || accepted == 0 {
		t.Fatalf("%d of 1000 lines accepted, want some dropped", accepted)
	}
	// Drops may be said in several notes, each after the lines written
	// before it; together they account for every line.
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	got, dropped := 0, 0
	timeout := time.After(10 * time.Second)
	for got+dropped < 1000 {
		select {
		case l := <-lines:
			var n int
			if _, err := fmt.Sscanf(l, "err:-:dropped %d log lines: cfkd was not reading them", &n); err == nil {
				dropped += n
				continue
			}
			if l != strings.TrimSuffix(string(line), "\n") {
				t.Fatalf("line %q", l)
			}
			got++
		case <-timeout:
			t.Fatalf("after 10s: %d lines and %d said dropped, want %d and %d", got, dropped, accepted, 1000-accepted)
		}
	}
	if got != accepted || dropped != 1000-accepted {
		t.Errorf("%d lines and %d said dropped, want %d and %d", got, dropped, accepted, 1000-accepted)
	}
}

// The status writer never drops, however far behind cfkd is.
func TestStatusWriterNeverDrops(t *testing.T) {
	w, r := pipeWriterOn(t, 0)
	const n = 5000 // ~300 kB: more than a pipe holds
	for i := range n {
		if !w.put(startedLine(fmt.Sprintf("w%d", i), i+1)) {
			t.Fatalf("status %d dropped", i)
		}
	}
	sc := bufio.NewScanner(r)
	for i := range n {
		if !sc.Scan() {
			t.Fatalf("status %d missing: %v", i, sc.Err())
		}
		if want := strings.TrimSuffix(string(startedLine(fmt.Sprintf("w%d", i), i+1)), "\n"); sc.Text() != want {
			t.Fatalf("status %d: %q, want %q", i, sc.Text(), want)
		}
	}
}

// A writer whose reader is gone drops everything and never blocks.
func TestWriterToAClosedPipe(t *testing.T) {
	w, r := pipeWriterOn(t, 0)
	r.Close()
	w.put([]byte("first\n"))
	w.flush(time.Now().Add(5 * time.Second))
	cfkdtest.WaitFor(t, 5*time.Second, "the writer to see the broken pipe", func() bool { return !w.put([]byte("x\n")) })
}

// A worker's output: lines become log lines, a long line is cut, the last
// line without a newline still counts.
func TestCopyLines(t *testing.T) {
	w, logR := pipeWriterOn(t, 0)
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { copyLines(outR, logOut, "svc", w); close(done) }()
	long := strings.Repeat("y", maxLineBytes+10)
	fmt.Fprintf(outW, "one\n\n%s\nlast", long)
	outW.Close()
	<-done
	w.flush(time.Now().Add(5 * time.Second))
	w.f.Close()
	sc := bufio.NewScanner(logR)
	sc.Buffer(make([]byte, 2*maxLineBytes), 2*maxLineBytes)
	var got []string
	for sc.Scan() {
		got = append(got, sc.Text())
	}
	want := []string{"out:svc:one", "out:svc:", "out:svc:" + long[:maxLineBytes], "out:svc:" + long[maxLineBytes:], "out:svc:last"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("log lines:\n%.200q\nwant\n%.200q", got, want)
	}
}
