package supervisor

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/controlfreak-go/cfk/eventlog"
)

// maxLineBytes bounds a line of service output: a longer line is logged
// in pieces of this size rather than buffered without end.
const maxLineBytes = 16 << 10

// readBufBytes is the one read buffer shared by every pipe.
const readBufBytes = 64 << 10

type stream int

const (
	stdout stream = iota
	stderr
)

// outputReader reads every service's stdout and stderr pipes with one
// epoll loop and one shared buffer. A goroutine and a buffer per pipe
// would cost about 20 KiB for each of 2000 pipes; this costs a small
// struct per pipe, plus a partial line only while one is pending.
type outputReader struct {
	log  *eventlog.Logger
	epfd int
	wake [2]int // a pipe that interrupts epoll_wait on close

	mu    sync.Mutex
	pipes map[int32]*pipeState
	files map[string]*fileLog // services' own log files (log_file), by path
	// closing counts files being closed off the callers' goroutines
	// (closing waits for the disk); pause and close wait for them.
	closing sync.WaitGroup

	done    chan struct{}
	pausing atomic.Bool // the wake-up means "stop, keep the pipes" (upgrade)
}

type pipeState struct {
	fd       int
	category string
	level    eventlog.Level
	pid      int
	partial  []byte
	file     LogFile  // where its lines go; no Path: cfkd's log
	sink     *fileLog // the open file, when file.Path is set
}

// LogFile is where a service's output goes when not to cfkd's log (the
// service attributes log_file, log_max_bytes, log_keep).
type LogFile struct {
	Path     string `json:"path,omitempty"`
	MaxBytes int64  `json:"max_bytes,omitempty"`
	Keep     int    `json:"keep,omitempty"`
}

// fileLog is an open service log file and how many pipes write to it: it
// is closed when the last one closes, so a changed log_file takes effect
// and no file stays open for nothing.
type fileLog struct {
	log  *eventlog.Logger
	spec LogFile // the settings it was opened with; spec.Path is its key in files
	refs int
}

func newOutputReader(log *eventlog.Logger) (*outputReader, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	r := &outputReader{log: log, epfd: epfd, pipes: map[int32]*pipeState{}, files: map[string]*fileLog{}, done: make(chan struct{})}
	if err := unix.Pipe2(r.wake[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("pipe: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(r.wake[0])}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, r.wake[0], &ev); err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	go r.loop()
	return r, nil
}

// add starts reading fd, the read end of a service's pipe; its lines go to
// file, or to cfkd's log when file has no path.
func (r *outputReader) add(fd int, name string, st stream, pid int, file LogFile) {
	r.addCategory(fd, "service."+name, st, pid, file)
}

// addCategory starts reading fd, logging its lines under prefix.out or
// prefix.err.
func (r *outputReader) addCategory(fd int, prefix string, st stream, pid int, file LogFile) {
	name := prefix
	p := &pipeState{fd: fd, pid: pid, category: prefix + ".out", level: eventlog.Info, file: file}
	if st == stderr {
		p.category, p.level = prefix+".err", eventlog.Error
	}
	_ = unix.SetNonblock(fd, true)
	r.mu.Lock()
	r.acquire(p)
	r.pipes[int32(fd)] = p
	r.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		r.mu.Lock()
		delete(r.pipes, int32(fd))
		r.release(p)
		r.mu.Unlock()
		unix.Close(fd)
		r.log.Log(eventlog.Error, "cfkd", 0, "cannot watch output of "+name+": "+err.Error())
	}
}

func (r *outputReader) loop() {
	defer close(r.done)
	buf := make([]byte, readBufBytes)
	events := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(r.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range events[:n] {
			if int(ev.Fd) == r.wake[0] {
				if r.pausing.Load() {
					var b [16]byte
					_, _ = unix.Read(r.wake[0], b[:])
					r.flushPartials()
					return
				}
				r.drainAll(buf)
				return
			}
			r.mu.Lock()
			p := r.pipes[ev.Fd]
			r.mu.Unlock()
			if p != nil {
				r.read(p, buf)
			}
		}
	}
}

// read takes what the pipe holds; at end of file it logs the last partial
// line, forgets the pipe, closes it and reports true.
func (r *outputReader) read(p *pipeState, buf []byte) (closed bool) {
	for {
		n, err := unix.Read(p.fd, buf)
		if n > 0 {
			r.lines(p, buf[:n])
			if n == len(buf) {
				continue
			}
			return false // less than a buffer: drained
		}
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return false
		}
		// EOF or error: the writer is gone.
		if len(p.partial) > 0 {
			r.emit(p, p.partial)
			p.partial = nil
		}
		r.mu.Lock()
		delete(r.pipes, int32(p.fd))
		r.release(p)
		r.mu.Unlock()
		_ = unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, p.fd, nil)
		unix.Close(p.fd)
		return true
	}
}

func (r *outputReader) lines(p *pipeState, b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			room := maxLineBytes - len(p.partial)
			for len(b) >= room {
				r.emit(p, append(p.partial, b[:room]...))
				p.partial, b, room = p.partial[:0], b[room:], maxLineBytes
			}
			p.partial = append(p.partial, b...)
			return
		}
		line := b[:i]
		if len(p.partial) > 0 {
			line = append(p.partial, line...)
			p.partial = p.partial[:0]
		}
		for len(line) > maxLineBytes {
			r.emit(p, line[:maxLineBytes])
			line = line[maxLineBytes:]
		}
		r.emit(p, line)
		b = b[i+1:]
	}
	if len(p.partial) == 0 && cap(p.partial) > 0 {
		p.partial = nil // give back the memory between bursts
	}
}

func (r *outputReader) emit(p *pipeState, line []byte) {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if p.sink != nil {
		p.sink.log.Write(p.level, p.category, p.pid, string(line))
		return
	}
	r.log.Write(p.level, p.category, p.pid, string(line))
}

// acquire opens p's log file, or takes one more reference to it. A file
// that cannot be opened leaves p on cfkd's log, which says why. r.mu held.
func (r *outputReader) acquire(p *pipeState) {
	name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(p.category, "service."), ".out"), ".err")
	p.sink = r.openLogLocked(p.file, name)
}

// release drops p's reference to its log file. r.mu held.
func (r *outputReader) release(p *pipeState) {
	r.closeLogLocked(p.sink)
	p.sink = nil
}

// openLog takes a reference to the log file spec names, opening it on
// first use; nil when spec has no path or the file cannot be opened
// (then service's output goes to cfkd's log, which says why).
func (r *outputReader) openLog(spec LogFile, service string) *fileLog {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.openLogLocked(spec, service)
}

// closeLog drops a reference openLog gave.
func (r *outputReader) closeLog(f *fileLog) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closeLogLocked(f)
}

func (r *outputReader) openLogLocked(spec LogFile, service string) *fileLog {
	if spec.Path == "" {
		return nil
	}
	f := r.files[spec.Path]
	if f == nil {
		l, err := eventlog.OpenRotating(spec.Path, spec.MaxBytes, spec.Keep)
		if err != nil {
			r.log.Log(eventlog.Error, "cfkd", 0, fmt.Sprintf("cannot open the log file of '%s': %v; its output goes to cfkd's log", service, err))
			return nil
		}
		f = &fileLog{log: l, spec: spec}
		r.files[spec.Path] = f
	} else if f.spec != spec {
		r.log.Log(eventlog.Warn, "cfkd", 0, fmt.Sprintf("'%s' shares %s, which is open with log_max_bytes=%d log_keep=%d: those apply until no one writes to it",
			service, spec.Path, f.spec.MaxBytes, f.spec.Keep))
	}
	f.refs++
	return f
}

// closeLogLocked closes the file after its last reference. Closing waits
// for its lines to reach the disk, so it happens on a goroutine of its
// own: neither the epoll loop nor the supervisor's waits for a slow disk.
func (r *outputReader) closeLogLocked(f *fileLog) {
	if f == nil {
		return
	}
	if f.refs--; f.refs == 0 {
		delete(r.files, f.spec.Path)
		r.closing.Add(1)
		go func() {
			defer r.closing.Done()
			f.log.Close()
		}()
	}
}

// reopenFiles reopens the services' log files (SIGUSR1, after logrotate
// moved them).
func (r *outputReader) reopenFiles() error {
	r.mu.Lock()
	files := make([]*fileLog, 0, len(r.files))
	for _, f := range r.files {
		files = append(files, f)
	}
	r.mu.Unlock()
	var first error
	for _, f := range files {
		if err := f.log.Reopen(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// drainAll reads what is left in every pipe, without waiting for writers.
func (r *outputReader) drainAll(buf []byte) {
	r.mu.Lock()
	ps := make([]*pipeState, 0, len(r.pipes))
	for _, p := range r.pipes {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	for _, p := range ps {
		if r.read(p, buf) {
			continue
		}
		if len(p.partial) > 0 {
			r.emit(p, p.partial)
			p.partial = nil
		}
		unix.Close(p.fd)
		r.mu.Lock()
		r.release(p)
		r.mu.Unlock()
	}
}

// flushPartials logs the partial lines pipes hold, so that none is lost
// when another process takes the pipes over.
func (r *outputReader) flushPartials() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.pipes {
		if len(p.partial) > 0 {
			r.emit(p, p.partial)
			p.partial = nil
		}
	}
}

// pause stops reading without closing any pipe (for an in-place
// upgrade), and says what each pipe is.
func (r *outputReader) pause() []savedPipe {
	r.pausing.Store(true)
	_, _ = unix.Write(r.wake[1], []byte{0})
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]savedPipe, 0, len(r.pipes))
	for _, p := range r.pipes {
		out = append(out, savedPipe{Fd: p.fd, Category: p.category, Level: int(p.level), Pid: p.pid, File: p.file})
	}
	// What the files' writers hold must be on disk before the exec.
	for _, f := range r.files {
		f.log.Sync()
	}
	r.closing.Wait()
	return out
}

// resume reads again after pause (the upgrade did not happen).
func (r *outputReader) resume() {
	r.pausing.Store(false)
	r.done = make(chan struct{})
	go r.loop()
}

// adopt starts reading a pipe handed over by the previous cfkd.
func (r *outputReader) adopt(p savedPipe) {
	unix.CloseOnExec(p.Fd)
	st := &pipeState{fd: p.Fd, category: p.Category, level: eventlog.Level(p.Level), pid: p.Pid, file: p.File}
	_ = unix.SetNonblock(p.Fd, true)
	r.mu.Lock()
	r.acquire(st)
	r.pipes[int32(p.Fd)] = st
	r.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(p.Fd)}
	_ = unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, p.Fd, &ev)
}

// savedPipe is an output pipe as it crosses an in-place upgrade.
type savedPipe struct {
	Fd       int     `json:"fd"`
	Category string  `json:"category"`
	Level    int     `json:"level"`
	Pid      int     `json:"pid"`
	File     LogFile `json:"file,omitempty"`
}

// close stops the reader after logging what the pipes hold.
func (r *outputReader) close() {
	_, _ = unix.Write(r.wake[1], []byte{0})
	<-r.done
	r.mu.Lock()
	for path, f := range r.files {
		f.log.Close()
		delete(r.files, path)
	}
	r.mu.Unlock()
	r.closing.Wait()
	unix.Close(r.epfd)
	unix.Close(r.wake[0])
	unix.Close(r.wake[1])
}
