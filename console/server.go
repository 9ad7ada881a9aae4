package console

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults for the Server's limits.
const (
	// DefaultMaxLineBytes is the longest request line served; longer lines
	// are answered `ERROR: line too long (limit N bytes)` and skipped.
	DefaultMaxLineBytes = 64 << 10
	// DefaultWriteTimeout is how long one answer may wait for a client that
	// does not read before the connection is dropped.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultMaxConns is how many connections are served at once.
	DefaultMaxConns = 1024
)

const (
	// refuseWriteTimeout bounds the one-line goodbye to a refused client.
	refuseWriteTimeout = time.Second
	// staleDialTimeout bounds the probe of an existing socket path: a live
	// cfkd answers at once; a busy one that does not is still not stale.
	staleDialTimeout = time.Second
	// acceptBackoffMax caps the pause after a failed accept (out of fds).
	acceptBackoffMax = time.Second
)

// Listen opens the management socket at addr (see ParseAddress).
//
// A unix socket is created with mode 0600. An existing socket file that
// nothing accepts on is a leftover of a dead cfkd and is replaced; if
// something answers on it, Listen refuses: "another cfkd is listening on
// PATH". A path that exists and is not a socket is never removed.
func Listen(addr string) (net.Listener, error) {
	a, err := ParseAddress(addr)
	if err != nil {
		return nil, err
	}
	if a.Network == "unix" {
		return listenUnix(a)
	}
	l, err := net.Listen("tcp", a.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", a, plainErr(err))
	}
	return l, nil
}

// umaskMu serialises our own umask changes; umask is per process.
var umaskMu sync.Mutex

func listenUnix(a Address) (net.Listener, error) {
	if err := removeStale(a.Addr); err != nil {
		return nil, err
	}
	// bind(2) creates the file with mode 0777 &^ umask, so the umask is
	// what makes the socket private from its first instant; a chmod after
	// bind would leave a window, and would follow a symlink planted in its
	// place. The umask is process-wide: a file another goroutine creates
	// meanwhile is only made more private.
	umaskMu.Lock()
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", a.Addr)
	syscall.Umask(old)
	umaskMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", a, plainErr(err))
	}
	return l, nil
}

// removeStale removes the socket file at path when no one accepts on it.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen on unix:%s: %w", path, plainErr(err))
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("listen on unix:%s: the path exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, staleDialTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("another cfkd is listening on %s", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("listen on unix:%s: probing the existing socket: %w", path, plainErr(err))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("listen on unix:%s: removing the stale socket: %w", path, plainErr(err))
	}
	return nil
}

// plainErr digs the system error out of err ("permission denied" rather
// than "listen unix /x: bind: permission denied"), so the caller can put
// its own context in front.
func plainErr(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New("timed out")
	}
	return err
}

// AuthTimeout is how long a TCP client of a Server with a Token has to
// send its `auth` line before it is dropped.
var AuthTimeout = 10 * time.Second

// Server serves the management socket: one request per line, answered in
// order (see the package documentation for the framing). Set its fields
// before calling Serve; the zero value of a limit means its default.
type Server struct {
	// Handler carries out the requests.
	Handler Handler
	// Logf, when set, receives the console's events: connections opened,
	// closed, refused or dropped, and panics in the Handler.
	Logf func(format string, args ...any)
	// MaxLineBytes is the longest request line served [DefaultMaxLineBytes].
	MaxLineBytes int
	// WriteTimeout is how long writing one answer may take before the
	// client is dropped [DefaultWriteTimeout].
	WriteTimeout time.Duration
	// MaxConns is how many connections are served at once; one more gets
	// `ERROR: too many connections` and is closed [DefaultMaxConns].
	MaxConns int
	// Token, when set, is the secret a TCP client must give before
	// anything else: its first line must be `auth TOKEN`. Anything else
	// first, or a wrong token, gets one ERROR and the connection is
	// closed. A unix socket's peers are checked by their credentials
	// instead and need no token; `auth` there is still checked, so that
	// one script works on both.
	Token string

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup // connection goroutines
}

func (s *Server) maxLineBytes() int {
	if s.MaxLineBytes > 0 {
		return s.MaxLineBytes
	}
	return DefaultMaxLineBytes
}

func (s *Server) writeTimeout() time.Duration {
	if s.WriteTimeout > 0 {
		return s.WriteTimeout
	}
	return DefaultWriteTimeout
}

func (s *Server) maxConns() int {
	if s.MaxConns > 0 {
		return s.MaxConns
	}
	return DefaultMaxConns
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// Serve accepts connections on l and serves each in its own goroutine. It
// returns nil once l is closed (by Close or by anyone), or the error that
// made accepting impossible. Connections outlive Serve; Close ends them.
func (s *Server) Serve(l net.Listener) error {
	if s.Handler == nil {
		return errors.New("console: Server has no Handler")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !retryableAccept(err) {
				return fmt.Errorf("accept on %s: %w", l.Addr(), err)
			}
			// Out of fds or the like: wait for connections to end
			// rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), acceptBackoffMax)
			s.logf("console accept failed: %v; retrying in %v", plainErr(err), backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.track(c)
	}
}

// retryableAccept tells the accept errors that pass with time.
func retryableAccept(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// track starts serving c, or turns it away when the server is full or
// closed.
func (s *Server) track(c net.Conn) {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		c.Close()
		return
	case len(s.conns) >= s.maxConns():
		s.mu.Unlock()
		s.logf("console connection refused: too many connections (limit %d)", s.maxConns())
		refuse(c, "too many connections")
		return
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()

	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
		defer c.Close()
		s.serveConn(c)
	}()
}

// refuse writes a single ERROR line to a client that will not be served
// and closes it. The socket's send buffer is empty, so the write does not
// wait; the deadline is there in case it ever does.
func refuse(c net.Conn, reason string) {
	_ = c.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
	_, _ = io.WriteString(c, "ERROR: "+reason+"\r\n")
	c.Close()
}

// Close stops the server: it closes the listeners Serve is using and every
// connection, then waits for the connection goroutines to end (a request
// already in the Handler is let finish).
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	var ls []net.Listener
	for l := range s.listeners {
		ls = append(ls, l)
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()

	var first error
	for _, l := range ls {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) && first == nil {
			first = err
		}
	}
	s.wg.Wait()
	return first
}

// serveConn answers c's lines until it says exit, hangs up, or stops
// reading its answers.
func (s *Server) serveConn(c net.Conn) {
	who, err := s.checkPeer(c)
	if err != nil {
		s.logf("console connection refused from %s: %v", who, err)
		refuse(c, "permission denied")
		return
	}
	s.logf("console connection from %s", who)
	why := "client hung up"
	defer func() { s.logf("console connection closed (%s): %s", who, why) }()

	lines := lineReader{r: bufio.NewReader(c), max: s.maxLineBytes()}
	w := bufio.NewWriter(c)
	_, onUnix := c.(*net.UnixConn)
	authed := s.Token == "" || onUnix
	if !authed {
		// A peer that never authenticates must not keep its slot: only
		// the operator's own clients hold a connection open.
		_ = c.SetReadDeadline(time.Now().Add(AuthTimeout))
	}
	for {
		line, err := lines.next()
		if err != nil && !errors.Is(err, errLineTooLong) {
			// At EOF a partial line is dropped, not executed: it may be a
			// command cut short by a client that died mid-write.
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				why = plainErr(err).Error()
			}
			if errors.Is(err, net.ErrClosed) {
				why = "console closed"
			}
			return
		}
		if err == nil && strings.EqualFold(trimSpace(string(line)), "exit") {
			why = "exit"
			_ = c.SetWriteDeadline(time.Now().Add(s.writeTimeout()))
			_ = w.Flush()
			return
		}

		// The deadline covers every write this answer causes, including a
		// flush of the buffer when it fills.
		_ = c.SetWriteDeadline(time.Now().Add(s.writeTimeout()))
		if token, isAuth := authLine(line, err); isAuth || !authed {
			if !isAuth {
				why = "no auth line first"
				writeError(w, `authentication required: send "auth TOKEN" first (the token is in cfkd's --token-file)`)
				_ = w.Flush()
				return
			}
			if !s.tokenOK(token) {
				why = "wrong token"
				s.logf("console authentication failed from %s", who)
				writeError(w, "authentication failed")
				_ = w.Flush()
				return
			}
			authed = true
			_ = c.SetReadDeadline(time.Time{})
			writeAnswer(w, nil, nil)
			if err = w.Flush(); err != nil {
				why = "cannot write the answer: " + plainErr(err).Error()
				return
			}
			continue
		}
		if err != nil {
			writeError(w, fmt.Sprintf("line too long (limit %d bytes)", lines.max))
		} else {
			out, err := s.execute(string(line))
			writeAnswer(w, out, err)
		}
		// Answers to pipelined lines go out together; flush once no whole
		// line is waiting, so a client never waits on an answer we hold.
		if !lines.lineBuffered() {
			err = w.Flush()
		} else {
			_, err = w.Write(nil) // report an earlier failed automatic flush
		}
		if err != nil {
			why = "cannot write the answer: " + plainErr(err).Error()
			return
		}
	}
}

// authLine says whether line is `auth TOKEN` (the verb in any case) and
// gives the token.
func authLine(line []byte, readErr error) (token string, ok bool) {
	if readErr != nil {
		return "", false
	}
	verb, rest, _ := strings.Cut(trimSpace(string(line)), " ")
	if !strings.EqualFold(verb, "auth") {
		return "", false
	}
	return trimSpace(rest), true
}

// tokenOK compares in constant time; with no Token set, any is fine.
func (s *Server) tokenOK(token string) bool {
	if s.Token == "" {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(token), []byte(s.Token)) == 1
}

// execute parses and runs one line. A panic in the Handler becomes an
// error answer and a log entry: one bad request must not end the daemon.
func (s *Server) execute(line string) (out []string, err error) {
	req, err := Parse(line)
	if err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			s.logf("console: panic executing %q: %v\n%s", line, p, debug.Stack())
			out, err = nil, fmt.Errorf("internal error: %v", p)
		}
	}()
	return s.Handler.Execute(req)
}

// writeAnswer writes the answer to one request: `ERROR: <msg>\r\n`, or the
// body lines each ending in "\n" and then `OK\r\n`. Only the final line
// ends in "\r\n", which is how a client tells a body line "OK" from the
// end; so no line may carry a "\r" or "\n" of its own.
func writeAnswer(w *bufio.Writer, out []string, err error) {
	if err != nil {
		writeError(w, err.Error())
		return
	}
	for _, l := range out {
		w.WriteString(oneLine(l))
		w.WriteByte('\n')
	}
	w.WriteString("OK\r\n")
}

func writeError(w *bufio.Writer, msg string) {
	w.WriteString("ERROR: ")
	w.WriteString(oneLine(msg))
	w.WriteString("\r\n")
}

var lineBreaks = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")

// oneLine turns line breaks into spaces.
func oneLine(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		return lineBreaks.Replace(s)
	}
	return s
}

// checkPeer says who is on the other end of c and whether they may talk
// to us. On a unix socket only root and our own user may (the socket's
// 0600 mode says the same; this holds even if the file's mode is
// loosened or the fd was inherited). TCP has no peer credentials.
func (s *Server) checkPeer(c net.Conn) (who string, err error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		if c.LocalAddr().Network() == "unix" {
			return "an unknown peer", errors.New("cannot read the peer's credentials")
		}
		return c.RemoteAddr().String(), nil
	}
	cred, err := peerCred(uc)
	if err != nil {
		return "an unknown peer", fmt.Errorf("cannot read the peer's credentials: %w", plainErr(err))
	}
	who = fmt.Sprintf("pid %d uid %d", cred.Pid, cred.Uid)
	if !peerAllowed(cred.Uid, uint32(os.Geteuid())) {
		return who, errors.New("not root nor cfkd's own user")
	}
	return who, nil
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	err = raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil {
		return nil, err
	}
	return cred, credErr
}

// peerAllowed is the console's access rule: root, or the user cfkd runs as.
func peerAllowed(peer, self uint32) bool {
	return peer == 0 || peer == self
}

// errLineTooLong reports a line longer than the limit; it has been read
// and thrown away.
var errLineTooLong = errors.New("line too long")

// lineReader reads "\n"-terminated lines of bounded length.
type lineReader struct {
	r   *bufio.Reader
	max int
	// lastLine makes an unterminated last line at EOF count as a line
	// (config files often lack a final newline); otherwise it is dropped.
	lastLine bool
	buf      []byte
}

// next returns the next line without its "\n" or "\r\n". The slice is
// valid until the next call. A line longer than max is read to its end
// and discarded, never held whole: next returns errLineTooLong for it and
// the following call continues after it.
func (lr *lineReader) next() ([]byte, error) {
	if cap(lr.buf) > 4*lr.r.Size() {
		lr.buf = nil // do not keep a long line's buffer for a short one
	}
	lr.buf = lr.buf[:0]
	tooLong := false
	for {
		frag, err := lr.r.ReadSlice('\n')
		if !tooLong {
			lr.buf = append(lr.buf, frag...)
			// max bytes of text plus "\r\n" at most.
			if len(lr.buf) > lr.max+2 {
				tooLong, lr.buf = true, lr.buf[:0]
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return nil, errLineTooLong
			}
			return lr.line(lr.buf[:len(lr.buf)-1])
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && lr.lastLine && (len(lr.buf) > 0 || tooLong):
			if tooLong {
				return nil, errLineTooLong
			}
			return lr.line(lr.buf)
		default:
			return nil, err
		}
	}
}

func (lr *lineReader) line(l []byte) ([]byte, error) {
	l = bytes.TrimSuffix(l, []byte("\r"))
	if len(l) > lr.max {
		return nil, errLineTooLong
	}
	return l, nil
}

// lineBuffered reports whether a whole line is already read and waiting.
func (lr *lineReader) lineBuffered() bool {
	b, _ := lr.r.Peek(lr.r.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}
