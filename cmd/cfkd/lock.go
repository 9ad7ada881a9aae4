package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// lockFile is $home/lock: it holds the pid of the cfkd that owns the home.
// The kernel releases a flock when its holder dies, so a lock left by a
// dead cfkd is simply taken over.
type lockFile struct{ f *os.File }

func takeLock(path string) (*lockFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		pid := string(bytes.TrimSpace(b))
		if pid == "" {
			pid = "unknown"
		}
		return nil, fmt.Errorf("another cfkd (pid %s) is already running with this home (lock %s)", pid, path)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &lockFile{f: f}, nil
}

func (l *lockFile) release() {
	_ = l.f.Truncate(0)
	_ = l.f.Close()
}

// lockFromFd takes over the lock the previous cfkd held: the same open
// file, so the same flock, across exec.
func lockFromFd(fd int) (*lockFile, error) {
	if fd <= 0 {
		return nil, fmt.Errorf("upgrade: no lock file was handed over")
	}
	unix.CloseOnExec(fd)
	return &lockFile{f: os.NewFile(uintptr(fd), "lock")}, nil
}
