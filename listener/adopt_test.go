package listener

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A listener made by package net is the hard case: its File's Fd would
// put the socket in blocking mode for everyone.
func TestAdoptNetListener(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Adopt(Spec{Name: "web", Nonblocking: true}, f)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	defer s.Close()
	if !s.Adopted() {
		t.Error("Adopted() = false")
	}
	if s.Addr() != l.Addr().String() || s.Port() != l.Addr().(*net.TCPAddr).Port {
		t.Errorf("Addr() = %q, Port() = %d; listener is %s", s.Addr(), s.Port(), l.Addr())
	}
	if s.Spec().Name != "web" {
		t.Errorf("Spec() = %+v", s.Spec())
	}
	if !cloexec(s.Fd()) {
		t.Error("the adopted fd is not close-on-exec")
	}
	if s.Fd() < 3 {
		t.Errorf("adopted fd %d is a standard fd", s.Fd())
	}
	_ = s.File().Fd()
	if !nonblocking(t, s.Fd()) {
		t.Error("File().Fd() of an adopted socket cleared O_NONBLOCK")
	}
	if _, err := f.Stat(); err == nil {
		t.Error("Adopt left the caller's file open")
	}
	// Go listens with MPTCP where the kernel has it: Queue follows.
	dial(t, s)
	waitFor(t, 5*time.Second, "the connection in the adopted socket's queue", func() bool {
		q, err := s.Queue()
		if err != nil {
			t.Fatalf("Queue of an adopted socket: %v", err)
		}
		return q.Queued == 1
	})
}

// Adopt sets O_NONBLOCK as the spec says, in both directions.
func TestAdoptSetsBlockingMode(t *testing.T) {
	for _, nb := range []bool{false, true} {
		src := mustBind(t, Spec{Service: "0", Nonblocking: !nb})
		fd, err := unix.FcntlInt(uintptr(src.Fd()), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Adopt(Spec{Nonblocking: nb}, os.NewFile(uintptr(fd), "dup"))
		if err != nil {
			t.Fatal(err)
		}
		if got := nonblocking(t, s.Fd()); got != nb {
			t.Errorf("Adopt(Nonblocking: %v): fd non-blocking = %v", nb, got)
		}
		s.Close()
	}
}

func TestAdoptUnixKeepsPath(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "a.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	defer l.Close()
	f, err := l.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Adopt(Spec{Name: "u"}, f)
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != "unix:"+path || s.Port() != 0 {
		t.Errorf("Addr() = %q, Port() = %d", s.Addr(), s.Port())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("Close removed an adopted socket's path: %v", err)
	}
}

func TestAdoptRefuses(t *testing.T) {
	notListening, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Bind(notListening, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	udp, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(pair[1])
	regular, err := os.CreateTemp(t.TempDir(), "notasocket")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		f    *os.File
		want string
	}{
		{os.NewFile(uintptr(notListening), "tcp"), "cannot adopt socket 'web' (fd %d): not a listening socket"},
		{os.NewFile(uintptr(udp), "udp"), "cannot adopt socket 'web' (fd %d): not a stream socket"},
		{os.NewFile(uintptr(pair[0]), "pair"), "cannot adopt socket 'web' (fd %d): not a listening socket"},
		{regular, "cannot adopt socket 'web' (fd %d): not a socket"},
	}
	for _, tt := range tests {
		fd := int(tt.f.Fd())
		// Adopt marks the fd close-on-exec even when it refuses it.
		unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0)
		_, err := Adopt(Spec{Name: "web"}, tt.f)
		if want := fmt.Sprintf(tt.want, fd); err == nil || err.Error() != want {
			t.Errorf("Adopt(%s): %v, want %q", tt.f.Name(), err, want)
		}
		if _, err := tt.f.Stat(); err != nil {
			t.Errorf("a refused file was closed: %v", err)
		}
		if !cloexec(fd) {
			t.Errorf("a refused fd %d was left inheritable", fd)
		}
		tt.f.Close()
	}
	if _, err := Adopt(Spec{}, nil); err == nil || err.Error() != "cannot adopt socket: no file" {
		t.Errorf("Adopt(nil): %v", err)
	}
}

func TestListenEnv(t *testing.T) {
	tests := []struct {
		names []string
		pid   int
		want  []string
	}{
		{[]string{"web", "admin"}, 0, []string{"LISTEN_FDS=2", "LISTEN_FDNAMES=web:admin"}},
		{[]string{"web"}, 4242, []string{"LISTEN_FDS=1", "LISTEN_FDNAMES=web", "LISTEN_PID=4242"}},
		{nil, 4242, nil},
	}
	for _, tt := range tests {
		if got := ListenEnv(tt.names, tt.pid); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ListenEnv(%q, %d) = %q, want %q", tt.names, tt.pid, got, tt.want)
		}
	}
}

// Without activation, or with bad variables, Inherited touches no fd.
func TestInheritedInProcess(t *testing.T) {
	pid := fmt.Sprint(os.Getpid())
	tests := []struct {
		pid, fds, names string
		err             string
	}{
		{"", "", "", ""},
		{"", "2", "a:b", ""},
		{"1", "2", "a:b", ""}, // someone else's
		{pid, "", "", ""},
		{pid, "0", "", ""},
		{"x", "1", "", "LISTEN_PID='x' is not a pid"},
		{pid, "two", "", "LISTEN_FDS='two' is not a number of fds"},
		{pid, "-1", "", "LISTEN_FDS='-1' is not a number of fds"},
		{pid, "2", "a", "LISTEN_FDNAMES has 1 names but LISTEN_FDS is 2"},
		{pid, "2", "a:b:c", "LISTEN_FDNAMES has 3 names but LISTEN_FDS is 2"},
		// fs.nr_open, the ceiling of any fd limit, is below 2^30.
		{pid, "2000000000", "", "LISTEN_FDS=2000000000 is more fds than this process may hold"},
	}
	for _, tt := range tests {
		t.Setenv("LISTEN_PID", tt.pid)
		t.Setenv("LISTEN_FDS", tt.fds)
		t.Setenv("LISTEN_FDNAMES", tt.names)
		files, err := Inherited()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.err || files != nil {
			t.Errorf("LISTEN_PID=%q LISTEN_FDS=%q LISTEN_FDNAMES=%q: %v, %q; want nothing, %q",
				tt.pid, tt.fds, tt.names, files, got, tt.err)
		}
		for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
			if v, ok := os.LookupEnv(k); ok {
				t.Errorf("%s=%q left in the environment", k, v)
			}
		}
	}
}

// activatedHelper starts the test binary as a socket-activated child with
// web and admin at fds 3 and 4. listenPid is the LISTEN_PID it gets: ""
// for its own pid (through sh's exec, which keeps the pid), or a value.
func activatedHelper(t *testing.T, web, admin *Socket, listenPid string) (*bufio.Reader, *exec.Cmd) {
	t.Helper()
	var cmd *exec.Cmd
	if listenPid == "" {
		cmd = exec.Command("/bin/sh", "-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`, os.Args[0], "-test.run=^$")
	} else {
		cmd = exec.Command(os.Args[0], "-test.run=^$")
	}
	cmd.Env = append(os.Environ(), helperEnv+"=inherited", "LISTEN_FDS=2", "LISTEN_FDNAMES=web:admin")
	if listenPid != "" {
		cmd.Env = append(cmd.Env, "LISTEN_PID="+listenPid)
	}
	cmd.ExtraFiles = []*os.File{web.File(), admin.File()}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return bufio.NewReader(out), cmd
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the helper: %q, %v", line, err)
	}
	return strings.TrimSuffix(line, "\n")
}

func TestInheritedFromActivator(t *testing.T) {
	web := mustBind(t, Spec{Name: "web", Service: "0"})
	admin := mustBind(t, Spec{Name: "admin", Service: filepath.Join(shortTempDir(t), "admin.sock")})
	r, cmd := activatedHelper(t, web, admin, "")
	want := []string{
		`env left: []`,
		fmt.Sprintf("fd web %s inherited-cloexec=true cloexec=true", web.Addr()),
		fmt.Sprintf("fd admin %s inherited-cloexec=true cloexec=true", admin.Addr()),
		"adopted 2",
	}
	for _, w := range want {
		if got := readLine(t, r); got != w {
			t.Errorf("helper said %q, want %q", got, w)
		}
	}
	// The child accepts on the very socket the parent bound.
	c := dial(t, web)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	greeting, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || greeting != "hello from the child\n" {
		t.Errorf("greeting %q, %v", greeting, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("helper: %v", err)
	}
}

// LISTEN_PID names another process: the fds are not for us.
func TestInheritedWrongPid(t *testing.T) {
	web := mustBind(t, Spec{Name: "web", Service: "0"})
	admin := mustBind(t, Spec{Name: "admin", Service: "0"})
	for _, pid := range []string{"1", fmt.Sprint(os.Getpid())} {
		r, cmd := activatedHelper(t, web, admin, pid)
		for _, w := range []string{`env left: []`, "adopted 0"} {
			if got := readLine(t, r); got != w {
				t.Errorf("LISTEN_PID=%s: helper said %q, want %q", pid, got, w)
			}
		}
		if rest, _ := io.ReadAll(r); len(rest) > 0 {
			t.Errorf("LISTEN_PID=%s: helper said more: %q", pid, rest)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper: %v", err)
		}
	}
}
