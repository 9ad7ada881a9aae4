package benchkit

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A command name with a space and a ')' of its own: the fields are
	// counted from the last ')'.
	line := "4242 (we) ird) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 11 13 20 0 1 0 12345 1000 100 0 0\n"
	st, err := parseStat(4242, []byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{PID: 4242, PPID: 1, Comm: "we) ird", State: 'S', Utime: 7, Stime: 3, CUtime: 11, CStime: 13}
	if st != want {
		t.Errorf("parseStat:\n got %+v\nwant %+v", st, want)
	}
	if st.CPU() != 100*time.Millisecond {
		t.Errorf("CPU() = %v, want 100ms (10 ticks)", st.CPU())
	}
	for _, bad := range []string{"", "1 (x S 1", "1 (x) S 1 2 3"} {
		if _, err := parseStat(1, []byte(bad)); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
}

func TestReadStatSelf(t *testing.T) {
	st, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.PPID != os.Getppid() {
		t.Errorf("PPID = %d, want %d", st.PPID, os.Getppid())
	}
	if !Alive(os.Getpid()) {
		t.Error("Alive(self) = false")
	}
}

func TestOtherShare(t *testing.T) {
	if got := OtherShare(time.Second, 0, time.Second); got != 0 {
		t.Errorf("a reading that went down: %v, want 0", got)
	}
	if got := OtherShare(0, time.Hour, time.Second); got != 1 {
		t.Errorf("more than the machine: %v, want 1", got)
	}
}
