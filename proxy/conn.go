package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds on what a proxy can make cfkd hold.
const (
	// maxStatusBytes bounds a status line; longer ones are malformed.
	maxStatusBytes = 64 << 10
	// maxLogBytes bounds a log line; longer ones are logged in pieces.
	maxLogBytes = 16 << 10
	// commandQueue is how many commands may wait for a slow proxy.
	commandQueue = 256
	// badPerSecond is how many malformed lines a second are reported; the
	// rest are counted and reported as a number.
	badPerSecond = 10
)

// ErrQueueFull says a proxy is not reading its commands.
var ErrQueueFull = errors.New("the proxy is not reading its commands")

// Handlers receive what a proxy says. They are called from the Conn's own
// goroutines, one line at a time per pipe.
type Handlers struct {
	Status func(Status)
	Log    func(LogLine)
	// Bad reports malformed input, at most badPerSecond a second.
	Bad func(error)
}

// Conn is cfkd's end of a running proxy's three pipes.
type Conn struct {
	cmds      chan []byte
	cmdW      *os.File
	statusR   *os.File
	logR      *os.File
	closeOnce sync.Once
	quit      chan struct{}
	wg        sync.WaitGroup
	bad       badLimiter
	detached  atomic.Bool // the pipes outlive the Conn (in-place upgrade)
}

// Open starts serving a proxy's pipes: commands are written to cmdW, and
// statusR and logR are read until the proxy closes them. Files made from
// non-blocking fds can be detached (see Detach).
func Open(cmdW, statusR, logR *os.File, h Handlers) *Conn {
	c := &Conn{cmds: make(chan []byte, commandQueue), cmdW: cmdW, statusR: statusR, logR: logR, quit: make(chan struct{})}
	c.bad.report = h.Bad
	c.wg.Add(3)
	go c.writeCommands()
	go func() {
		defer c.wg.Done()
		defer c.closeUnlessDetached(statusR)
		readLines(statusR, maxStatusBytes, func(line []byte, whole bool) {
			if !whole {
				c.bad.add(fmt.Errorf("status line longer than %d bytes dropped", maxStatusBytes))
				return
			}
			st, err := DecodeStatus(line)
			if err != nil {
				c.bad.add(err)
				return
			}
			if h.Status != nil {
				h.Status(st)
			}
		})
	}()
	go func() {
		defer c.wg.Done()
		defer c.closeUnlessDetached(logR)
		var cont *LogLine // the line a long piece continues
		readLines(logR, maxLogBytes, func(line []byte, whole bool) {
			var l LogLine
			if cont != nil {
				l = LogLine{Stderr: cont.Stderr, Service: cont.Service, Msg: string(line)}
			} else {
				var err error
				if l, err = ParseLog(line); err != nil {
					c.bad.add(err)
					if !whole {
						cont = &LogLine{Stderr: true}
					}
					return
				}
			}
			cont = nil
			if !whole {
				cont = &LogLine{Stderr: l.Stderr, Service: l.Service}
			}
			if h.Log != nil {
				h.Log(l)
			}
		})
	}()
	return c
}

// readLines calls each with every line of r (without its newline); a line
// longer than max comes in pieces, each but the last with whole false.
func readLines(r io.Reader, max int, each func(line []byte, whole bool)) {
	br := bufio.NewReaderSize(r, max)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			each(line[:len(line)-1], true)
		case errors.Is(err, bufio.ErrBufferFull):
			each(line, false)
		default:
			if len(line) > 0 {
				each(line, true)
			}
			return
		}
	}
}

func (c *Conn) closeUnlessDetached(f *os.File) {
	if !c.detached.Load() {
		f.Close()
	}
}

func (c *Conn) writeCommands() {
	defer c.wg.Done()
	defer c.closeUnlessDetached(c.cmdW)
	for {
		select {
		case b := <-c.cmds:
			if _, err := c.cmdW.Write(b); err != nil {
				// The proxy is gone; its exit is reported by the reaper.
				<-c.quit
				return
			}
		case <-c.quit:
			return
		}
	}
}

// Send queues one command line. It never blocks.
func (c *Conn) Send(line []byte) error {
	select {
	case <-c.quit:
		return errors.New("the proxy's command pipe is closed")
	default:
	}
	select {
	case c.cmds <- line:
		return nil
	default:
		return ErrQueueFull
	}
}

// Close closes the command pipe, which a proxy takes as "cfkd is gone,
// stop everything and exit". The readers go on until the proxy closes its
// end; Wait waits for them.
func (c *Conn) Close() {
	c.closeOnce.Do(func() { close(c.quit) })
}

// Wait returns when every pipe is closed.
func (c *Conn) Wait() { c.wg.Wait() }

// Detach stops the Conn's goroutines and hands back its three pipes as
// plain fds (not close-on-exec cleared: the caller decides), for cfkd's
// in-place upgrade: the next cfkd opens a Conn on them. Commands still
// queued are written first. A line a reader had half read is lost.
func (c *Conn) Detach() (cmd, status, log int, err error) {
	c.detached.Store(true)
	// Let the writer empty its queue, then stop it.
	for deadline := time.Now().Add(time.Second); len(c.cmds) > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	c.Close()
	_ = c.cmdW.SetWriteDeadline(time.Now())
	_ = c.statusR.SetReadDeadline(time.Now())
	_ = c.logR.SetReadDeadline(time.Now())
	c.wg.Wait()
	fds := make([]int, 3)
	for i, f := range []*os.File{c.cmdW, c.statusR, c.logR} {
		if fds[i], err = dupFd(f); err != nil {
			return 0, 0, 0, err
		}
		f.Close()
	}
	return fds[0], fds[1], fds[2], nil
}

// dupFd copies a file's fd without File.Fd's side effect on blocking mode.
func dupFd(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var fd int
	var derr error
	if err := rc.Control(func(raw uintptr) { fd, derr = unix.FcntlInt(raw, unix.F_DUPFD_CLOEXEC, 3) }); err != nil {
		return 0, err
	}
	return fd, derr
}

// badLimiter reports malformed input at a bounded rate.
type badLimiter struct {
	mu      sync.Mutex
	report  func(error)
	window  time.Time
	n       int
	dropped int
}

func (b *badLimiter) add(err error) {
	if b.report == nil {
		return
	}
	b.mu.Lock()
	now := time.Now()
	if now.Sub(b.window) >= time.Second {
		if b.dropped > 0 {
			defer b.report(fmt.Errorf("%d more malformed lines from the proxy were not shown", b.dropped))
		}
		b.window, b.n, b.dropped = now, 0, 0
	}
	b.n++
	if b.n > badPerSecond {
		b.dropped++
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	b.report(err)
}
