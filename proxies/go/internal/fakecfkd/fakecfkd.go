// Package fakecfkd plays cfkd's side of the proxy protocol for tests and
// benchmarks: it starts a proxy program with the three pipes and some
// listening sockets, as cfkd does (PROTOCOL.md), sends it commands and
// records the statuses and log lines it writes back.
package fakecfkd

import (
	"bufio"
	"encoding/json"
	"fmt"
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
	Path    string
	Args    []string
	Env     []string // added to the proxy's environment (add_env)
	Sockets []string // names of TCP sockets to bind on 127.0.0.1:0
	Home    string   // CFKD_HOME
	Stdout  *os.File // the proxy's stdout and stderr; nil discards them
}

// Proxy is a running proxy program.
type Proxy struct {
	Cmd     *exec.Cmd
	Sockets map[string]*Socket

	commands *os.File // cfkd's write end of the command pipe
	done     chan struct{}
	waitErr  error

	mu       sync.Mutex
	statuses []Status
	logs     []string
	changed  chan struct{} // closed and replaced at each new line
}

// Start starts the proxy with fds 3, 4, 5 = command, status and log pipes
// and the sockets from fd 6 on.
func Start(opt Options) (*Proxy, error) {
	p := &Proxy{Sockets: map[string]*Socket{}, done: make(chan struct{}), changed: make(chan struct{})}
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
	extra := []*os.File{cmdR, statusW, logW}
	env := append(os.Environ(),
		"_CFK_COMMAND_FD=3", "_CFK_STATUS_FD=4", "_CFK_LOG_FD=5", "CFKD_HOME="+opt.Home)
	for _, name := range opt.Sockets {
		s, err := Listen(name)
		if err != nil {
			return nil, err
		}
		p.Sockets[name] = s
		env = append(env, "_CFK_SOCK_"+name+"="+strconv.Itoa(3+len(extra)))
		extra = append(extra, s.File)
	}
	env = append(env, opt.Env...)
	p.Cmd = exec.Command(opt.Path, opt.Args...)
	p.Cmd.Env = env
	p.Cmd.ExtraFiles = extra
	if opt.Stdout != nil {
		p.Cmd.Stdout = opt.Stdout
		p.Cmd.Stderr = opt.Stdout
	}
	if err := p.Cmd.Start(); err != nil {
		return nil, err
	}
	for _, f := range []*os.File{cmdR, statusW, logW} {
		f.Close()
	}
	p.commands = cmdW
	go p.read(statusR, func(line string) {
		s := Status{Raw: line}
		json.Unmarshal([]byte(line), &s)
		p.statuses = append(p.statuses, s)
	})
	go p.read(logR, func(line string) { p.logs = append(p.logs, line) })
	go func() {
		// Waiting for the proxy here is fine: the one-reaper rule is
		// the proxy's, for its workers.
		p.waitErr = p.Cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Listen binds a TCP socket on 127.0.0.1 and returns it as the fd a
// proxy or its workers inherit; nothing in this process accepts on it.
func Listen(name string) (*Socket, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer l.Close() // only the workers accept: keep the fd, not a listener
	f, err := socketFile(l.(*net.TCPListener))
	if err != nil {
		return nil, err
	}
	return &Socket{Name: name, Addr: l.Addr().String(), File: f}, nil
}

// socketFile returns a dup of l's fd as a File made by os.NewFile while
// the socket is non-blocking. Unlike TCPListener.File's, its Fd (which
// exec.Cmd calls for ExtraFiles) leaves O_NONBLOCK alone: the flag belongs
// to the description every worker shares, and a Go worker's accept must
// never find it cleared.
func socketFile(l *net.TCPListener) (*os.File, error) {
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
	return os.NewFile(uintptr(fd), "listener "+l.Addr().String()), nil
}

func (p *Proxy) read(f *os.File, add func(string)) {
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		p.mu.Lock()
		add(sc.Text())
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
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
