// Package eventlog is cfkd's log: the daemon's own events and every line
// its services write, in one file ($home/cfkd.log by default).
//
// One goroutine owns the file and writes what the rest of cfkd sends it on a
// bounded channel, so a slow disk never stalls the supervisor loop: the loop
// logs with Log, which drops (and counts) an event rather than wait when the
// queue is full. Service output is logged with Write, which waits, so a
// service that writes faster than the disk is slowed as a full pipe would
// slow it, and no line is lost. Reopen (on SIGUSR1) makes the writer close
// and reopen the file, which is what logrotate's "create" mode expects.
package eventlog

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Level is the severity of an event.
type Level int

// Levels, as log4perl named them in the original's log.
const (
	Debug Level = iota
	Info
	Warn
	Error
)

func (l Level) String() string {
	switch l {
	case Debug:
		return "DEBUG"
	case Info:
		return "INFO"
	case Warn:
		return "WARN"
	case Error:
		return "ERROR"
	}
	return "?"
}

// queueLen bounds the events waiting for the writer.
const queueLen = 8192

// flushDelay is how long the writer lets lines gather before it flushes
// them, so that a burst of output costs one write(2), not one per line.
const flushDelay = 50 * time.Millisecond

type entry struct {
	at       time.Time
	level    Level
	category string
	pid      int
	msg      string
	reopen   chan error // a request to reopen the file instead of a line
	sync     chan struct{}
}

// Logger writes events to a file. Its methods are safe for concurrent use.
type Logger struct {
	path    string
	q       chan entry
	done    chan struct{}
	dropped atomic.Int64
	closed  atomic.Bool
	mu      sync.RWMutex // senders hold it shared, Close exclusive: no send on a closed queue
	mirror  io.Writer    // optional copy of every line (tests, foreground)

	// Rotation (OpenRotating): when a line would take the file past
	// maxBytes, the file becomes path.1 (path.1 path.2, and so on up to
	// path.keep; older ones are removed) and a new one is started.
	maxBytes int64
	keep     int
}

// Open opens (creating, appending) the log file at path and starts its
// writer. An empty path logs nowhere, which tests use.
func Open(path string, mirror io.Writer) (*Logger, error) {
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	l := &Logger{path: path, q: make(chan entry, queueLen), done: make(chan struct{}), mirror: mirror}
	go l.writer(f)
	return l, nil
}

// OpenRotating is Open with rotation by size: when a line would take the
// file past maxBytes, the file is renamed path.1 (older copies shift to
// path.2 ... path.keep, and the one beyond is removed) and a new file is
// started. maxBytes 0 never rotates; keep 0 keeps no old copy.
func OpenRotating(path string, maxBytes int64, keep int) (*Logger, error) {
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	l := &Logger{path: path, q: make(chan entry, queueLen), done: make(chan struct{}),
		maxBytes: maxBytes, keep: max(keep, 0)}
	go l.writer(f)
	return l, nil
}

// Path is the file the logger writes.
func (l *Logger) Path() string { return l.path }

// rotate shifts path.N-1 to path.N, ..., path to path.1 (or removes path
// when no copy is kept). Missing copies are skipped.
func rotate(path string, keep int) error {
	if keep == 0 {
		return os.Remove(path)
	}
	_ = os.Remove(fmt.Sprintf("%s.%d", path, keep))
	for i := keep - 1; i >= 1; i-- {
		err := os.Rename(fmt.Sprintf("%s.%d", path, i), fmt.Sprintf("%s.%d", path, i+1))
		if err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return os.Rename(path, path+".1")
}

func fileSize(f *os.File) int64 {
	if f == nil {
		return 0
	}
	if info, err := f.Stat(); err == nil {
		return info.Size()
	}
	return 0
}

func openFile(path string) (*os.File, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

// Log records an event without ever blocking: when the writer is behind by
// queueLen events, the event is dropped and counted, and the count is
// written once the writer catches up.
func (l *Logger) Log(level Level, category string, pid int, msg string) {
	if l == nil {
		return
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed.Load() {
		return
	}
	select {
	case l.q <- entry{at: time.Now(), level: level, category: category, pid: pid, msg: msg}:
	default:
		l.dropped.Add(1)
	}
}

// Write records an event, waiting for room in the queue. Service output
// uses it so that no line is lost.
func (l *Logger) Write(level Level, category string, pid int, msg string) {
	if l == nil {
		return
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed.Load() {
		return
	}
	l.q <- entry{at: time.Now(), level: level, category: category, pid: pid, msg: msg}
}

// Infof logs a daemon event at INFO.
func (l *Logger) Infof(format string, args ...any) {
	l.Log(Info, "cfkd", 0, fmt.Sprintf(format, args...))
}

// Warnf logs a daemon event at WARN.
func (l *Logger) Warnf(format string, args ...any) {
	l.Log(Warn, "cfkd", 0, fmt.Sprintf(format, args...))
}

// Errorf logs a daemon event at ERROR.
func (l *Logger) Errorf(format string, args ...any) {
	l.Log(Error, "cfkd", 0, fmt.Sprintf(format, args...))
}

// Reopen closes and reopens the log file, for log rotation.
func (l *Logger) Reopen() error {
	if l == nil || l.closed.Load() {
		return nil
	}
	ch := make(chan error, 1)
	l.mu.RLock()
	if l.closed.Load() {
		l.mu.RUnlock()
		return nil
	}
	l.q <- entry{reopen: ch}
	l.mu.RUnlock()
	return <-ch
}

// Sync waits until everything logged so far is written.
func (l *Logger) Sync() {
	if l == nil || l.closed.Load() {
		return
	}
	ch := make(chan struct{})
	l.mu.RLock()
	if l.closed.Load() {
		l.mu.RUnlock()
		return
	}
	l.q <- entry{sync: ch}
	l.mu.RUnlock()
	<-ch
}

// Close writes what is queued and closes the file.
func (l *Logger) Close() {
	if l == nil {
		return
	}
	l.mu.Lock()
	if l.closed.Swap(true) {
		l.mu.Unlock()
		return
	}
	close(l.q)
	l.mu.Unlock()
	<-l.done
}

func (l *Logger) writer(f *os.File) {
	defer close(l.done)
	var w *bufio.Writer
	if f != nil {
		w = bufio.NewWriterSize(f, 64<<10)
	}
	var line []byte
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	pending := false
	flush := func() {
		if w != nil {
			_ = w.Flush()
		}
		pending = false
	}
	size := fileSize(f)
	// After a failed rotation, the next try waits for another maxBytes.
	limit := l.maxBytes
	write := func(line []byte) {
		if l.maxBytes > 0 && f != nil && size > 0 && size+int64(len(line)) > limit {
			flush()
			err := rotate(l.path, l.keep)
			if err == nil {
				var nf *os.File
				if nf, err = openFile(l.path); err == nil {
					_ = f.Close()
					f = nf
					w.Reset(f)
					size, limit = 0, l.maxBytes
				}
			}
			if err != nil {
				limit = size + l.maxBytes
				msg := format(nil, entry{at: time.Now(), level: Error, category: "cfkd",
					msg: fmt.Sprintf("cannot rotate %s: %v", l.path, err)})
				l.emit(w, msg)
				size += int64(len(msg))
			}
		}
		l.emit(w, line)
		size += int64(len(line))
	}
	for {
		select {
		case e, ok := <-l.q:
			if !ok {
				flush()
				if f != nil {
					_ = f.Close()
				}
				return
			}
			switch {
			case e.reopen != nil:
				flush()
				nf, err := openFile(l.path)
				if err == nil {
					if f != nil {
						_ = f.Close()
					}
					f = nf
					if f != nil {
						w.Reset(f)
					}
					size, limit = fileSize(f), l.maxBytes
				}
				e.reopen <- err
				continue
			case e.sync != nil:
				flush()
				close(e.sync)
				continue
			}
			if n := l.dropped.Swap(0); n > 0 {
				line = format(line[:0], entry{at: time.Now(), level: Warn, category: "cfkd",
					msg: fmt.Sprintf("log queue full: %d events were dropped", n)})
				write(line)
			}
			line = format(line[:0], e)
			write(line)
			if !pending {
				pending = true
				timer.Reset(flushDelay)
			}
		case <-timer.C:
			flush()
		}
	}
}

func (l *Logger) emit(w *bufio.Writer, line []byte) {
	if w != nil {
		_, _ = w.Write(line)
	}
	if l.mirror != nil {
		_, _ = l.mirror.Write(line)
	}
}

// format renders one line: time, pid of the service (or -), level,
// category, message — the original's "%S %p %c - %m" with a timestamp.
func format(b []byte, e entry) []byte {
	b = e.at.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, ' ')
	if e.pid > 0 {
		b = strconv.AppendInt(b, int64(e.pid), 10)
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	b = append(b, e.level.String()...)
	b = append(b, ' ')
	b = append(b, e.category...)
	b = append(b, " - "...)
	b = append(b, e.msg...)
	return append(b, '\n')
}
