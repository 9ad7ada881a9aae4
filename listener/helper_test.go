package listener

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary run a helper instead of the tests: it is
// re-executed as a real child process (the os/exec tests' pattern).
const helperEnv = "CFK_LISTENER_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "inherited":
		os.Exit(helperInherited())
	case "bind":
		os.Exit(helperBind())
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// helperInherited adopts what socket activation passed and reports, one
// line each: whether any LISTEN_* variable is left, then per fd "fd NAME
// ADDR cloexec=BOOL", then "adopted N"; then it accepts one connection on
// the socket named web, if any, and greets it.
func helperInherited() int {
	files, err := Inherited()
	if err != nil {
		fmt.Printf("error %v\n", err)
		return 1
	}
	var left []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LISTEN_") {
			left = append(left, kv)
		}
	}
	fmt.Printf("env left: %q\n", left)
	var web *Socket
	for _, in := range files {
		cloexecIn := cloexec(int(in.File.Fd()))
		s, err := Adopt(Spec{Name: in.Name}, in.File)
		if err != nil {
			fmt.Printf("error %v\n", err)
			return 1
		}
		fmt.Printf("fd %s %s inherited-cloexec=%v cloexec=%v\n", in.Name, s.Addr(), cloexecIn, cloexec(s.Fd()))
		if in.Name == "web" {
			web = s
		}
	}
	fmt.Printf("adopted %d\n", len(files))
	if web != nil {
		nfd, _, err := unix.Accept4(web.Fd(), unix.SOCK_CLOEXEC)
		if err != nil {
			fmt.Printf("error accept: %v\n", err)
			return 1
		}
		unix.Write(nfd, []byte("hello from the child\n"))
		unix.Close(nfd)
	}
	return 0
}

// helperBind binds host and service from the environment and prints the
// error, or "bound ADDR".
func helperBind() int {
	s, err := Bind(Spec{Host: os.Getenv("CFK_HOST"), Service: os.Getenv("CFK_SERVICE")})
	if err != nil {
		fmt.Println(err)
		return 0
	}
	fmt.Println("bound", s.Addr())
	s.Close()
	return 0
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// cloexec reports whether fd has FD_CLOEXEC.
func cloexec(fd int) bool {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil && fl&unix.FD_CLOEXEC != 0
}

// nonblocking reports whether fd's description has O_NONBLOCK.
func nonblocking(t *testing.T, fd int) bool {
	t.Helper()
	b, err := isNonblocking(fd)
	if err != nil {
		t.Fatalf("F_GETFL fd %d: %v", fd, err)
	}
	return b
}

// needIPv6 skips a test when the kernel has no IPv6 loopback, but fails it
// in CI, where a missing ::1 means a broken runner, not a reason to test
// less.
func needIPv6(t *testing.T) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrInet6{Addr: [16]byte{15: 1}})
		unix.Close(fd)
	}
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no IPv6 loopback in CI: %v", err)
	}
	t.Skipf("no IPv6 loopback: %v", err)
}

// mustBind binds spec or fails the test, and closes the socket at the end.
func mustBind(t *testing.T, spec Spec) *Socket {
	t.Helper()
	s, err := Bind(spec)
	if err != nil {
		t.Fatalf("Bind(%+v): %v", spec, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// dial connects to a socket's address, network taken from Addr.
func dial(t *testing.T, s *Socket) net.Conn {
	t.Helper()
	network, addr := "tcp", s.Addr()
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", p
	}
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// shortTempDir is a temp dir whose paths fit in sun_path.
func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "cfk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// errnoOf digs the errno out of an error, or 0.
func errnoOf(err error) unix.Errno {
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}
