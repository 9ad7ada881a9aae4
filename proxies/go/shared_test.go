package cfkproxy

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// dupFd returns a dup of fd, which mapShared may close.
func dupFd(t *testing.T, fd uintptr) int {
	t.Helper()
	d, err := unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestBuildAndMapShared(t *testing.T) {
	want := testPattern(3<<20 + 5)
	f, size, err := buildShared(func(w io.Writer) error {
		for b := want; len(b) > 0; b = b[min(len(b), 1000):] { // small writes
			if _, err := w.Write(b[:min(len(b), 1000)]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if size != int64(len(want)) {
		t.Errorf("size %d, want %d", size, len(want))
	}
	if _, err := f.WriteAt([]byte("x"), 0); err == nil {
		t.Error("the sealed memfd took a write")
	}
	if err := f.Truncate(1); err == nil {
		t.Error("the sealed memfd shrank")
	}
	got, err := mapShared(dupFd(t, f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(got)
	if !bytes.Equal(got, want) {
		t.Error("the mapping differs from what Preload wrote")
	}
}

func TestMapSharedRefusesUnsealedMemory(t *testing.T) {
	fd, err := unix.MemfdCreate("unsealed", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	unix.Write(fd, []byte("mutable"))
	// Every seal but F_SEAL_WRITE is not enough.
	unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL)
	if _, err := mapShared(dupFd(t, uintptr(fd))); err == nil || !strings.Contains(err.Error(), "not sealed") {
		t.Errorf("mapShared of a writable memfd: %v, want a refusal", err)
	}
	// A file that cannot be sealed at all.
	p, err := unix.Open(t.TempDir(), unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		t.Skip("no O_TMPFILE:", err)
	}
	defer unix.Close(p)
	if _, err := mapShared(dupFd(t, uintptr(p))); err == nil {
		t.Error("mapShared of an ordinary file succeeded")
	}
}

func TestEmptyShared(t *testing.T) {
	for _, preload := range []func(io.Writer) error{nil, func(io.Writer) error { return nil }} {
		f, size, err := buildShared(preload)
		if err != nil || size != 0 {
			t.Fatalf("empty preload: size %d, %v", size, err)
		}
		b, err := mapShared(dupFd(t, f.Fd()))
		if err != nil || b != nil {
			t.Errorf("empty shared memory mapped as %v, %v; want nil", b, err)
		}
		f.Close()
	}
	if _, _, err := buildShared(func(io.Writer) error { return errors.New("no") }); err == nil || err.Error() != "preload: no" {
		t.Errorf("failing preload: %v", err)
	}
}
