package listener

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestBindTCPv4AnyPort(t *testing.T) {
	s := mustBind(t, Spec{Name: "web", Host: "127.0.0.1", Service: "0"})
	if s.Port() == 0 {
		t.Fatal("Port() = 0 after binding port 0: the real port is not known")
	}
	if want := "127.0.0.1:" + strconv.Itoa(s.Port()); s.Addr() != want {
		t.Errorf("Addr() = %q, want %q", s.Addr(), want)
	}
	if s.Adopted() {
		t.Error("a bound socket says it was adopted")
	}
	if s.Spec().Name != "web" || s.Spec().Service != "0" {
		t.Errorf("Spec() = %+v", s.Spec())
	}
	if !cloexec(s.Fd()) {
		t.Error("the listening fd is not close-on-exec")
	}
	if nonblocking(t, s.Fd()) {
		t.Error("the listening fd is non-blocking without nonblocking=1")
	}
	if s.File() == nil || int(s.File().Fd()) != s.Fd() {
		t.Errorf("File().Fd() = %v, Fd() = %d", s.File(), s.Fd())
	}
	reuse, err := unix.GetsockoptInt(s.Fd(), unix.SOL_SOCKET, unix.SO_REUSEADDR)
	if err != nil || reuse == 0 {
		t.Errorf("SO_REUSEADDR = %d, %v; want set", reuse, err)
	}
	c := dial(t, s)
	nfd, _, err := unix.Accept4(s.Fd(), unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatalf("accept on the bound fd: %v", err)
	}
	defer unix.Close(nfd)
	unix.Write(nfd, []byte("hi\n"))
	buf := make([]byte, 3)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi\n" {
		t.Errorf("read %q, %v", buf, err)
	}
}

// The default host is loopback, and default backlog is somaxconn.
func TestBindDefaults(t *testing.T) {
	s := mustBind(t, Spec{Service: "0"})
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Errorf("no host: Addr() = %q, want 127.0.0.1:PORT", s.Addr())
	}
	q, err := s.Queue()
	if err != nil {
		t.Fatal(err)
	}
	if want := uint32(somaxconn()); q.Limit != want {
		t.Errorf("default backlog: limit %d, want somaxconn %d", q.Limit, want)
	}
}

func TestBindTCPv6(t *testing.T) {
	needIPv6(t)
	for _, host := range []string{"::1", "[::1]"} {
		s := mustBind(t, Spec{Host: host, Service: "0"})
		if want := "[::1]:" + strconv.Itoa(s.Port()); s.Port() == 0 || s.Addr() != want {
			t.Errorf("host %s: Addr() = %q, Port() = %d", host, s.Addr(), s.Port())
		}
		v6only, err := unix.GetsockoptInt(s.Fd(), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		if err != nil || v6only != 1 {
			t.Errorf("IPV6_V6ONLY = %d, %v; want 1", v6only, err)
		}
		if !cloexec(s.Fd()) {
			t.Error("the listening fd is not close-on-exec")
		}
		dial(t, s)
	}
}

// With IPV6_V6ONLY, "::" and "0.0.0.0" on one port are two sockets.
func TestBindV6OnlyLeavesV4Free(t *testing.T) {
	needIPv6(t)
	s6 := mustBind(t, Spec{Host: "::", Service: "0"})
	s4 := mustBind(t, Spec{Host: "0.0.0.0", Service: strconv.Itoa(s6.Port())})
	if s4.Port() != s6.Port() {
		t.Errorf("ports %d and %d", s4.Port(), s6.Port())
	}
}

func TestBindNonblocking(t *testing.T) {
	dir := shortTempDir(t)
	for _, spec := range []Spec{
		{Host: "127.0.0.1", Service: "0", Nonblocking: true},
		{Host: "unix/", Service: filepath.Join(dir, "nb.sock"), Nonblocking: true},
	} {
		s := mustBind(t, spec)
		if !nonblocking(t, s.Fd()) {
			t.Errorf("%s: not non-blocking", s.Addr())
		}
		// os.StartProcess calls File.Fd to place ExtraFiles: the flag,
		// which every worker shares, must survive it.
		_ = s.File().Fd()
		if !nonblocking(t, s.Fd()) {
			t.Errorf("%s: File().Fd() cleared O_NONBLOCK", s.Addr())
		}
		if !cloexec(s.Fd()) {
			t.Errorf("%s: not close-on-exec", s.Addr())
		}
	}
}

func TestBindPortInUse(t *testing.T) {
	s := mustBind(t, Spec{Host: "127.0.0.1", Service: "0"})
	_, err := Bind(Spec{Host: "127.0.0.1", Service: strconv.Itoa(s.Port())})
	want := fmt.Sprintf("cannot bind 127.0.0.1:%d: address already in use", s.Port())
	if err == nil || err.Error() != want {
		t.Fatalf("second bind: %v, want %q", err, want)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("errors.Is(err, EADDRINUSE) is false for %v", err)
	}
}

func TestBindParseErrors(t *testing.T) {
	for _, tt := range []struct {
		spec Spec
		want string
	}{
		{Spec{Host: "foo bar", Service: "80"}, "cannot parse host 'foo bar'"},
		{Spec{Host: "127.0.0.1"}, "no service given (a port, a service name or a unix socket path)"},
		{Spec{Host: "127.0.0.1", Service: "no-such-service-here"}, "unknown service 'no-such-service-here'"},
		{Spec{Host: "[fe80::1%nosuchif0]", Service: "0"}, "cannot bind [fe80::1%nosuchif0]:0: unknown interface 'nosuchif0'"},
		{Spec{Host: "unix/", Service: "/no/such/dir/x.sock"}, "cannot bind unix:/no/such/dir/x.sock: no such file or directory"},
		{Spec{Service: "/no/such/dir/x.sock"}, "cannot bind unix:/no/such/dir/x.sock: no such file or directory"},
		{Spec{Service: "/tmp/cfk-owner.sock", Owner: "no-such-user-cfk"}, "cannot bind unix:/tmp/cfk-owner.sock: unknown user 'no-such-user-cfk'"},
		{Spec{Service: "/tmp/cfk-owner.sock", Group: "no-such-group-cfk"}, "cannot bind unix:/tmp/cfk-owner.sock: unknown group 'no-such-group-cfk'"},
	} {
		s, err := Bind(tt.spec)
		if err == nil {
			s.Close()
			t.Errorf("Bind(%+v) succeeded, want %q", tt.spec, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("Bind(%+v) = %q, want %q", tt.spec, err, tt.want)
		}
	}
}

// Port 80 needs CAP_NET_BIND_SERVICE. As root, the helper child runs in a
// new user namespace, where it is root but has no capability over the
// host's network namespace.
func TestBindPermissionDenied(t *testing.T) {
	want := "cannot bind 127.0.0.1:80: permission denied"
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n <= 80 {
			t.Skipf("ip_unprivileged_port_start is %d: anyone may bind port 80", n)
		}
	}
	if os.Geteuid() != 0 {
		_, err := Bind(Spec{Host: "127.0.0.1", Service: "80"})
		if err == nil || err.Error() != want {
			t.Fatalf("Bind port 80 unprivileged: %v, want %q", err, want)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=bind", "CFK_HOST=127.0.0.1", "CFK_SERVICE=http")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC) {
			t.Skipf("no user namespaces here: %v", err)
		}
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("Bind port 80 without the capability: %q, want %q", got, want)
	}
}

func TestBindUnix(t *testing.T) {
	dir := shortTempDir(t)
	path := filepath.Join(dir, "web.sock")
	s := mustBind(t, Spec{Name: "web", Host: "unix/", Service: path})
	if s.Addr() != "unix:"+path || s.Port() != 0 {
		t.Errorf("Addr() = %q, Port() = %d", s.Addr(), s.Port())
	}
	if !cloexec(s.Fd()) {
		t.Error("the listening fd is not close-on-exec")
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("socket file: %v, %v", fi, err)
	}
	dial(t, s)
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the path Bind created is still there after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestBindUnixMode(t *testing.T) {
	dir := shortTempDir(t)
	// The umask takes group write from 0660: Bind must give it back.
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	for _, mode := range []os.FileMode{0o660, 0o600, 0o666, 0o700} {
		path := filepath.Join(dir, fmt.Sprintf("m%o.sock", mode))
		mustBind(t, Spec{Service: path, Mode: mode})
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("mode %04o: file has %04o", mode, fi.Mode().Perm())
		}
	}
	// Mode 0 leaves what the umask made.
	path := filepath.Join(dir, "umask.sock")
	mustBind(t, Spec{Service: path})
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("no mode, umask 022: %v, %v; want 0755", fi.Mode().Perm(), err)
	}
}

func TestBindUnixOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	dir := shortTempDir(t)
	path := filepath.Join(dir, "own.sock")
	mustBind(t, Spec{Service: path, Owner: "65534", Group: "65534", Mode: 0o660})
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 65534 || st.Gid != 65534 || st.Mode&0o777 != 0o660 {
		t.Errorf("owner %d:%d mode %o, want 65534:65534 0660", st.Uid, st.Gid, st.Mode&0o777)
	}
	path = filepath.Join(dir, "root.sock")
	mustBind(t, Spec{Service: path, Owner: "root", Group: "root"})
	if err := unix.Lstat(path, &st); err != nil || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("owner root: %d:%d, %v", st.Uid, st.Gid, err)
	}
}

// A stale path (its listener is gone, connect is refused) is replaced.
func TestBindUnixStale(t *testing.T) {
	dir := shortTempDir(t)
	path := filepath.Join(dir, "stale.sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	unix.Listen(fd, 1)
	unix.Close(fd) // a crashed daemon: the path stays
	if _, err := net.Dial("unix", path); err == nil {
		t.Fatal("the stale socket still accepts")
	}
	s := mustBind(t, Spec{Service: path})
	dial(t, s)
}

// A live socket, or a file that is not a socket, is never removed.
func TestBindUnixLiveRefused(t *testing.T) {
	dir := shortTempDir(t)
	path := filepath.Join(dir, "live.sock")
	first := mustBind(t, Spec{Service: path})
	_, err := Bind(Spec{Service: path})
	if want := "cannot bind unix:" + path + ": address already in use"; err == nil || err.Error() != want {
		t.Fatalf("bind over a live socket: %v, want %q", err, want)
	}
	dial(t, first) // still there, still accepting

	// A full backlog is still a live listener.
	full := filepath.Join(dir, "full.sock")
	mustBind(t, Spec{Service: full, ListenQSize: 1})
	for i := 0; i < 3; i++ {
		if c, err := net.Dial("unix", full); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	if _, err := Bind(Spec{Service: full}); errnoOf(err) != unix.EADDRINUSE {
		t.Errorf("bind over a full live socket: %v", err)
	}

	file := filepath.Join(dir, "data")
	if err := os.WriteFile(file, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Bind(Spec{Service: file})
	if want := "cannot bind unix:" + file + ": address already in use"; err == nil || err.Error() != want {
		t.Errorf("bind over a regular file: %v, want %q", err, want)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "precious" {
		t.Errorf("the regular file was touched: %q, %v", b, err)
	}

	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Bind(Spec{Service: link}); errnoOf(err) != unix.EADDRINUSE {
		t.Errorf("bind over a symlink: %v", err)
	}
	if _, err := os.Lstat(link); err != nil {
		t.Errorf("the symlink was removed: %v", err)
	}
}

// Close removes the path only while it is still the file Bind made.
func TestCloseLeavesAReplacedPath(t *testing.T) {
	dir := shortTempDir(t)
	path := filepath.Join(dir, "x.sock")
	s, err := Bind(Spec{Service: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	other := mustBind(t, Spec{Service: path}) // someone else's now
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("Close removed another socket's path: %v", err)
	}
	dial(t, other)
}

func TestBindUnixPathTooLongForSunPath(t *testing.T) {
	path := "/tmp/" + strings.Repeat("x", 120)
	_, err := Bind(Spec{Service: path})
	if err == nil || !strings.Contains(err.Error(), "is too long (125 bytes, at most 107)") {
		t.Errorf("long path: %v", err)
	}
}

// Every error is one plain sentence: no Go type names, no newlines.
func TestBindErrorsArePlain(t *testing.T) {
	for _, spec := range []Spec{
		{Host: "foo\nbar", Service: "80"},
		{Host: "127.0.0.1", Service: "/x"},
		{Service: "/no/such/dir/x.sock"},
		{Host: "unix/", Service: "80"},
	} {
		_, err := Bind(spec)
		if err == nil {
			t.Errorf("Bind(%+v) succeeded", spec)
			continue
		}
		msg := err.Error()
		if strings.ContainsAny(msg, "\n\r*{}") || strings.Contains(msg, "syscall") || strings.Contains(msg, "unix.") ||
			strings.Contains(msg, "net.") || bytes.Contains([]byte(msg), []byte("Errno")) {
			t.Errorf("Bind(%+v) error is not a plain sentence: %q", spec, msg)
		}
	}
}
