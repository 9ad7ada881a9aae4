// Package fakecfkd plays cfkd's side of the proxy protocol for tests and
// benchmarks: it starts a proxy program with the three pipes and some
// listening sockets, as cfkd does (proxies/PROTOCOL.md), sends it commands
// and records the statuses and log lines it writes back. The proxies in
// Go, Perl and Python are all tested against this one fake, so that they
// are held to the same reading of the protocol.
package fakecfkd

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Status is one status line from the proxy.
type Status struct {
	Status     string `json:"status"`
	Name       string `json:"name"`
	Pid        int    `json:"pid"`
	ExitStatus *int   `json:"exit_status"`
	Raw        string `json:"-"`
	Err        error  `json:"-"` // why Raw is not a JSON status line; nil when it is one
}

func (s Status) String() string { return s.Raw }

// Socket is a listening socket cfkd passes to the proxy as _CFK_SOCK_<Name>.
type Socket struct {
	Name string
	Addr string   // where clients connect, "127.0.0.1:port"
	File *os.File // the fd, as the proxy gets it
}

// Options says how to start the proxy.
type Options struct {
	Path     string
	Args     []string
	Env      []string // added to the proxy's environment (add_env)
	Unsetenv []string // variables of this process's environment the proxy does not inherit
	Sockets  []string // names of TCP sockets to bind on 127.0.0.1:0
	// BlockingSockets leaves the sockets in blocking mode, as cfkd binds
	// a socket without nonblocking=1; by default they keep the O_NONBLOCK
	// Go's listener set (see socketFile).
	BlockingSockets bool
	// SocketsFirst puts the sockets at fds 3.. and the pipes after them,
	// so that a child asking for them in another order needs fds swapped.
	SocketsFirst bool
	Home         string    // CFKD_HOME
	Dir          string    // the proxy's working directory; "" is this process's
	Stdout       io.Writer // the proxy's stdout and stderr; nil discards them
	// NewProcessGroup runs the proxy in a process group of its own, so
	// that a signal to this process's group does not reach it.
	NewProcessGroup bool
	// HoldLogs leaves the log pipe unread until ReadLogs: a cfkd that
	// does not keep up with the proxy's log lines.
	HoldLogs bool
}

// Proxy is a running proxy program.
type Proxy struct {
	Cmd     *exec.Cmd
	Sockets map[string]*Socket

	commands *os.File // cfkd's write end of the command pipe
	logR     *os.File // cfkd's read end of the log pipe
	logOnce  sync.Once
	readers  sync.WaitGroup
	drained  chan struct{} // closed when both pipes are read to EOF
	done     chan struct{}
	waitErr  error

	mu       sync.Mutex
	statuses []Status
	logs     []string
	changed  chan struct{} // closed and replaced at each new line
}

// Start starts the proxy with the command, status and log pipes at fds 3,
// 4, 5 and the sockets from fd 6 on (or the other way round, with
// SocketsFirst).
func Start(opt Options) (*Proxy, error) {
	p := &Proxy{Sockets: map[string]*Socket{}, drained: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{})}
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	logR, logW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	pipes := []*os.File{cmdR, statusW, logW}
	var socks []*os.File
	for _, name := range opt.Sockets {
		s, err := listen(name, opt.BlockingSockets)
		if err != nil {
			return nil, err
		}
		p.Sockets[name] = s
		socks = append(socks, s.File)
	}
	extra := append(append([]*os.File(nil), pipes...), socks...)
	if opt.SocketsFirst {
		extra = append(append([]*os.File(nil), socks...), pipes...)
	}
	// fd is where f lands in the proxy: ExtraFiles[i] becomes fd 3+i.
	fd := func(f *os.File) string {
		for i, e := range extra {
			if e == f {
				return strconv.Itoa(3 + i)
			}
		}
		panic("fakecfkd: a file not handed over")
	}
	env := append(environ(opt.Unsetenv),
		"_CFK_COMMAND_FD="+fd(cmdR), "_CFK_STATUS_FD="+fd(statusW), "_CFK_LOG_FD="+fd(logW), "CFKD_HOME="+opt.Home)
	for _, name := range opt.Sockets {
		env = append(env, "_CFK_SOCK_"+name+"="+fd(p.Sockets[name].File))
	}
	env = append(env, opt.Env...)
	p.Cmd = exec.Command(opt.Path, opt.Args...)
	p.Cmd.Env = env
	p.Cmd.Dir = opt.Dir
	p.Cmd.ExtraFiles = extra
	if opt.Stdout != nil {
		p.Cmd.Stdout = opt.Stdout
		p.Cmd.Stderr = opt.Stdout
	}
	if opt.NewProcessGroup {
		p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := p.Cmd.Start(); err != nil {
		return nil, err
	}
	for _, f := range pipes {
		f.Close()
	}
	p.commands, p.logR = cmdW, logR
	p.readers.Add(2)
	go p.read(statusR, func(line string) {
		s := Status{Raw: line}
		s.Err = json.Unmarshal([]byte(line), &s)
		p.statuses = append(p.statuses, s)
	})
	if !opt.HoldLogs {
		p.ReadLogs()
	}
	go func() { p.readers.Wait(); close(p.drained) }()
	go func() {
		// Waiting for the proxy here is fine: the one-reaper rule is
		// the proxy's, for its workers.
		p.waitErr = p.Cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// environ is this process's environment without cfkd's protocol
// variables (ours would name fds the proxy does not have) and unset.
func environ(unset []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		drop := strings.HasPrefix(k, "_CFK_") || strings.HasPrefix(k, "LISTEN_") || k == "CFKD_HOME"
		for _, u := range unset {
			drop = drop || k == u
		}
		if !drop {
			env = append(env, kv)
		}
	}
	return env
}

// Listen binds a TCP socket on 127.0.0.1 and returns it as the fd a
// proxy or its workers inherit; nothing in this process accepts on it.
func Listen(name string) (*Socket, error) { return listen(name, false) }

func listen(name string, blocking bool) (*Socket, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer l.Close() // only the workers accept: keep the fd, not a listener
	f, err := socketFile(l.(*net.TCPListener), blocking)
	if err != nil {
		return nil, err
	}
	return &Socket{Name: name, Addr: l.Addr().String(), File: f}, nil
}

// socketFile returns a dup of l's fd as a File made by os.NewFile. Made
// while the socket is non-blocking, unlike TCPListener.File's, its Fd
// (which exec.Cmd calls for ExtraFiles) leaves O_NONBLOCK alone: the flag
// belongs to the description every worker shares, and a Go worker's accept
// must never find it cleared. A blocking socket is made blocking before
// os.NewFile, which then leaves it so.
func socketFile(l *net.TCPListener, blocking bool) (*os.File, error) {
	rc, err := l.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	cerr := rc.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) })
	if cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	if blocking {
		if err := unix.SetNonblock(fd, false); err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	return os.NewFile(uintptr(fd), "listener "+l.Addr().String()), nil
}

// read adds each line of f, the last one even without its newline; a
// line has no length limit, so that a proxy's overlong line is seen whole.
func (p *Proxy) read(f *os.File, add func(string)) {
	defer p.readers.Done()
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			p.mu.Lock()
			add(strings.TrimSuffix(line, "\n"))
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// ReadLogs starts reading the log pipe, if HoldLogs kept it unread.
func (p *Proxy) ReadLogs() {
	p.logOnce.Do(func() {
		go p.read(p.logR, func(line string) { p.logs = append(p.logs, line) })
	})
}

// Send writes one command as a JSON line.
func (p *Proxy) Send(cmd map[string]any) error {
	b, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	return p.SendLine(string(b))
}

// SendLine writes one raw line.
func (p *Proxy) SendLine(line string) error {
	_, err := p.commands.WriteString(line + "\n")
	return err
}

// CloseCommands closes the command pipe, as cfkd's exit does.
func (p *Proxy) CloseCommands() error { return p.commands.Close() }

// StartService sends a start command and waits for its started status.
func (p *Proxy) StartService(d time.Duration, cmd map[string]any) (Status, error) {
	name, _ := cmd["name"].(string)
	n := len(p.Statuses())
	cmd["command"] = "start"
	if err := p.Send(cmd); err != nil {
		return Status{}, err
	}
	return p.WaitStatus(d, n, func(s Status) bool { return s.Name == name })
}

// Statuses returns every status so far.
func (p *Proxy) Statuses() []Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Status(nil), p.statuses...)
}

// Logs returns every log line so far.
func (p *Proxy) Logs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.logs...)
}

// WaitStatus waits for a status at index from or later that matches.
func (p *Proxy) WaitStatus(d time.Duration, from int, match func(Status) bool) (Status, error) {
	var found Status
	err := p.wait(d, func() bool {
		for _, s := range p.statuses[min(from, len(p.statuses)):] {
			if match(s) {
				found = s
				return true
			}
		}
		return false
	})
	if err != nil {
		return Status{}, fmt.Errorf("no such status after %v; statuses: %v; logs: %q", d, p.Statuses(), p.Logs())
	}
	return found, nil
}

// WaitLog waits for a log line that matches.
func (p *Proxy) WaitLog(d time.Duration, match func(string) bool) (string, error) {
	var found string
	err := p.wait(d, func() bool {
		for _, l := range p.logs {
			if match(l) {
				found = l
				return true
			}
		}
		return false
	})
	if err != nil {
		return "", fmt.Errorf("no such log line after %v; logs: %q", d, p.Logs())
	}
	return found, nil
}

// WaitLogPrefix waits for a log line starting with prefix.
func (p *Proxy) WaitLogPrefix(d time.Duration, prefix string) (string, error) {
	return p.WaitLog(d, func(l string) bool { return strings.HasPrefix(l, prefix) })
}

// wait checks cond (with p.mu held) at each new line until it holds.
func (p *Proxy) wait(d time.Duration, cond func() bool) error {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		ok := cond()
		changed := p.changed
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return fmt.Errorf("timeout")
		}
	}
}

// Wait waits for the proxy to exit and returns its exit error.
func (p *Proxy) Wait(d time.Duration) (exited bool, err error) {
	select {
	case <-p.done:
		return true, p.waitErr
	case <-time.After(d):
		return false, nil
	}
}

// Done is closed when the proxy has exited.
func (p *Proxy) Done() <-chan struct{} { return p.done }

// Drained is closed when the status and log pipes are read to their end:
// every process that could write them has closed them, and every line is
// in Statuses and Logs. (With HoldLogs, not before ReadLogs.)
func (p *Proxy) Drained() <-chan struct{} { return p.drained }

// Signal sends sig to the proxy.
func (p *Proxy) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// Close stops the proxy (TERM, then KILL) and closes the sockets.
func (p *Proxy) Close() {
	select {
	case <-p.done:
	default:
		p.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.Cmd.Process.Kill()
			<-p.done
		}
	}
	p.commands.Close()
	for _, s := range p.Sockets {
		s.File.Close()
	}
}
