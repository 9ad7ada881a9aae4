package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"
)

// start is one line written by the marker: the service process's own
// CLOCK_REALTIME reading as its first act, and its pid.
type start struct {
	at  time.Time
	pid int
}

// markerLog follows the file that every service of one supervisor appends
// its start line to. It keeps every line read so far, in file order.
type markerLog struct {
	path    string
	f       *os.File
	partial []byte
	starts  []start
	notify  *os.File // inotify instance watching path, nil if unavailable
}

// newMarkerLog creates (truncates) path and starts following it.
func newMarkerLog(path string) (*markerLog, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	m := &markerLog{path: path, f: f}
	// inotify lets the kill loop sleep until a marker writes, instead of
	// polling the file on a CPU the supervisor under test may need. The
	// fd is non-blocking so that os.NewFile puts it in the runtime poller
	// and read deadlines work.
	if fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK); err == nil {
		if _, err := syscall.InotifyAddWatch(fd, path, syscall.IN_MODIFY); err == nil {
			m.notify = os.NewFile(uintptr(fd), "inotify")
		} else {
			syscall.Close(fd)
		}
	}
	return m, nil
}

func (m *markerLog) Close() {
	m.f.Close()
	if m.notify != nil {
		m.notify.Close()
	}
}

// read takes in whatever has been appended since the last call.
func (m *markerLog) read() error {
	buf := make([]byte, 64<<10)
	for {
		n, err := m.f.Read(buf)
		m.partial = append(m.partial, buf[:n]...)
		if err == io.EOF || n == 0 {
			break
		}
		if err != nil {
			return err
		}
	}
	for {
		i := bytes.IndexByte(m.partial, '\n')
		if i < 0 {
			return nil
		}
		line := m.partial[:i]
		m.partial = m.partial[i+1:]
		sp := bytes.IndexByte(line, ' ')
		if sp < 0 {
			return fmt.Errorf("%s: bad line %q", m.path, line)
		}
		ns, err1 := strconv.ParseInt(string(line[:sp]), 10, 64)
		pid, err2 := strconv.Atoi(string(line[sp+1:]))
		if err1 != nil || err2 != nil {
			return fmt.Errorf("%s: bad line %q", m.path, line)
		}
		m.starts = append(m.starts, start{at: time.Unix(0, ns), pid: pid})
	}
}

// waitCount waits until at least n lines have been written in all, and
// returns every line read so far.
func (m *markerLog) waitCount(n int, timeout time.Duration) ([]start, error) {
	deadline := time.Now().Add(timeout)
	for {
		if err := m.read(); err != nil {
			return m.starts, err
		}
		if len(m.starts) >= n {
			return m.starts, nil
		}
		if !time.Now().Before(deadline) {
			return m.starts, fmt.Errorf("%d of %d services started within %v", len(m.starts), n, timeout)
		}
		// A thousand services starting would wake an inotify reader a
		// thousand times, on the CPUs the supervisor is using: poll.
		sleepUntil(deadline, 5*time.Millisecond)
	}
}

// waitNext waits for one line after the first `after` lines and returns it.
func (m *markerLog) waitNext(after int, timeout time.Duration) (start, error) {
	deadline := time.Now().Add(timeout)
	for {
		if err := m.read(); err != nil {
			return start{}, err
		}
		if len(m.starts) > after {
			return m.starts[after], nil
		}
		if !time.Now().Before(deadline) {
			return start{}, fmt.Errorf("no service started within %v", timeout)
		}
		m.waitWrite(deadline)
	}
}

// sleepUntil sleeps for step, or until deadline if that is sooner.
func sleepUntil(deadline time.Time, step time.Duration) {
	d := time.Until(deadline)
	if d > step {
		d = step
	}
	time.Sleep(d)
}

// waitWrite waits for the next write to the file, at most until deadline
// and never longer than pollEvery (a safety net should inotify miss one).
func (m *markerLog) waitWrite(deadline time.Time) {
	const pollEvery = 20 * time.Millisecond
	until := time.Now().Add(pollEvery)
	if deadline.Before(until) {
		until = deadline
	}
	if m.notify == nil {
		time.Sleep(time.Until(until))
		return
	}
	m.notify.SetReadDeadline(until)
	var ev [4096]byte
	m.notify.Read(ev[:])
}
