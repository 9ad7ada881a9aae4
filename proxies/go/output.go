package cfkproxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// maxLineBytes is the longest line of a worker's output that becomes one
// log line; a longer one is cut and continued on the next log line, so a
// worker that never writes a newline cannot make the proxy buffer without
// end.
const maxLineBytes = 16 << 10

// maxLogQueueBytes bounds what the proxy holds for cfkd's log pipe when
// cfkd does not read it: beyond it log lines are dropped (and counted), so
// workers never stall on their stdout because cfkd is slow. Statuses have
// their own queue, which is never dropped: a status lost is a service cfkd
// believes is starting or running forever.
const maxLogQueueBytes = 1 << 20

// pipeWriter sends lines to one of cfkd's pipes without ever blocking its
// callers: put queues, and one goroutine writes. The fd is non-blocking,
// so that goroutine waits in Go's poller, not in a thread.
type pipeWriter struct {
	f        *os.File
	maxBytes int // 0: never drop

	mu      sync.Mutex
	queue   [][]byte
	bytes   int
	dropped int
	broken  bool // the pipe failed: cfkd is gone, drop everything
	wake    chan struct{}
	idle    *sync.Cond // signalled when the queue empties
	writing bool
}

// newPipeWriter takes the inherited pipe fd: it marks it close-on-exec
// (no worker must hold cfkd's pipe) and non-blocking.
func newPipeWriter(fd int, name string, maxBytes int) (*pipeWriter, error) {
	if err := checkFd(fd); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	w := &pipeWriter{
		f:        os.NewFile(uintptr(fd), name),
		maxBytes: maxBytes,
		wake:     make(chan struct{}, 1),
	}
	w.idle = sync.NewCond(&w.mu)
	go w.run()
	return w, nil
}

// put queues one line (with its newline). It reports false when the line
// was dropped.
func (w *pipeWriter) put(line []byte) bool {
	w.mu.Lock()
	if w.broken {
		w.mu.Unlock()
		return false
	}
	if w.maxBytes > 0 && w.bytes+len(line) > w.maxBytes {
		w.dropped++
		w.mu.Unlock()
		return false
	}
	w.queue = append(w.queue, line)
	w.bytes += len(line)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return true
}

func (w *pipeWriter) run() {
	for range w.wake {
		for {
			w.mu.Lock()
			// Dropped lines are said even when nothing else is queued,
			// so the count never waits for the next line.
			if len(w.queue) == 0 && w.dropped == 0 || w.broken {
				w.writing = false
				w.idle.Broadcast()
				w.mu.Unlock()
				break
			}
			batch := w.queue
			w.queue = nil
			w.writing = true
			counted := 0
			for _, b := range batch {
				counted += len(b)
			}
			if w.dropped > 0 {
				// Said once there is room again, in the same stream.
				note := logLine(logErr, proxyService, fmt.Sprintf("dropped %d log lines: cfkd was not reading them", w.dropped))
				batch = append(batch, note)
				w.dropped = 0
			}
			w.mu.Unlock()

			err := writeAll(w.f, batch)

			w.mu.Lock()
			w.bytes -= counted
			if err != nil {
				w.broken = true
				w.queue = nil
				w.bytes = 0
			}
			w.mu.Unlock()
		}
	}
}

// writeAll writes the lines with as few write(2) calls as a pipe allows.
func writeAll(f *os.File, lines [][]byte) error {
	var buf []byte
	for _, l := range lines {
		buf = append(buf, l...)
	}
	_, err := f.Write(buf)
	return err
}

// flush waits until everything queued is written, the pipe broke, or the
// deadline passed.
func (w *pipeWriter) flush(deadline time.Time) {
	done := make(chan struct{})
	go func() {
		w.mu.Lock()
		for (len(w.queue) > 0 || w.writing) && !w.broken {
			w.idle.Wait()
		}
		w.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Until(deadline)):
	}
}

// copyLines turns a worker's stdout or stderr into log lines until EOF,
// then closes r. Lines longer than maxLineBytes are cut.
func copyLines(r *os.File, typ, service string, log *pipeWriter) {
	defer r.Close()
	br := bufio.NewReaderSize(r, maxLineBytes)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			}
			log.put(logLine(typ, service, string(line)))
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return
		default:
			return
		}
	}
}

// checkFd tells whether fd is open.
func checkFd(fd int) error {
	if fd < 0 {
		return fmt.Errorf("invalid fd %d", fd)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return fmt.Errorf("fd %d: %w", fd, err)
	}
	return nil
}
