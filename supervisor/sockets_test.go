package supervisor

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// socketRow is `command sockets`'s line for name.
func (h *harness) socketRow(name string) []string {
	h.t.Helper()
	out := h.must("command sockets " + name)
	if len(out) != 1 {
		h.t.Fatalf("sockets %s: %q", name, out)
	}
	return strings.Split(out[0], "\t")
}

// declareSocket declares a TCP socket on a free loopback port and binds it.
func (h *harness) tcpSocket(name string) string {
	h.t.Helper()
	h.must("socket " + name + " host=127.0.0.1")
	h.must("socket " + name + " service=0")
	h.must("command bind " + name)
	row := h.socketRow(name)
	if row[2] != "bound" {
		h.t.Fatalf("socket %s not bound: %q", name, row)
	}
	return row[1]
}

// fdsOf lists a process's open fds and where they point.
func fdsOf(t *testing.T, pid int) map[int]string {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		out[n] = target
	}
	return out
}

func envOf(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}

// ourSocketTarget is what /proc shows for the fd cfkd listens on.
func (h *harness) socketTarget(name string) string {
	h.t.Helper()
	fd := h.socketRow(name)[3]
	target, err := os.Readlink("/proc/self/fd/" + fd)
	if err != nil {
		h.t.Fatal(err)
	}
	return target
}

func TestSocketsAsListenFds(t *testing.T) {
	h := newHarness(t)
	h.tcpSocket("web")
	h.tcpSocket("admin")
	h.declare("w", "sleep 1000", "sockets=admin, web")
	h.must("command start service w")
	var pid int
	// The shell exec step replaces itself with sleep: wait for that.
	waitFor(t, 5*time.Second, "sleep exec'd", func() bool {
		pid = h.status("w").pid
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		return strings.TrimSpace(string(b)) == "sleep"
	})
	// sleep may open locale files for a moment after exec: poll until
	// its fds are the ones it keeps.
	var fds map[int]string
	var nums []int
	deadline := time.Now().Add(5 * time.Second)
	for {
		fds, nums = fdsOf(t, pid), nums[:0]
		for n := range fds {
			nums = append(nums, n)
		}
		sort.Ints(nums)
		if len(nums) == 5 && nums[4] == 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(nums) != 5 || nums[4] != 4 {
		t.Errorf("child has fds %v (%v), want exactly 0-4", nums, fds)
	}
	if fds[3] != h.socketTarget("admin") || fds[4] != h.socketTarget("web") {
		t.Errorf("fd 3 %q, fd 4 %q: want admin's %q then web's %q", fds[3], fds[4], h.socketTarget("admin"), h.socketTarget("web"))
	}
	env := envOf(t, pid)
	if env["LISTEN_PID"] != strconv.Itoa(pid) || env["LISTEN_FDS"] != "2" || env["LISTEN_FDNAMES"] != "admin:web" {
		t.Errorf("LISTEN_* = %q %q %q (pid %d)", env["LISTEN_PID"], env["LISTEN_FDS"], env["LISTEN_FDNAMES"], pid)
	}
	if users := h.socketRow("web")[4]; users != "w" {
		t.Errorf("web's users %q", users)
	}
}

func TestTieStdinToServesConnections(t *testing.T) {
	h := newHarness(t)
	addr := h.tcpSocket("fcgi")
	for _, n := range []string{"a", "b"} {
		h.declare(n, helperCmd("accept", "stdin"), "tie_stdin_to=fcgi")
	}
	h.must("command start all")
	pa, pb := h.waitState("a", "running").pid, h.waitState("b", "running").pid
	if fdsOf(t, pa)[0] != h.socketTarget("fcgi") {
		t.Fatalf("stdin of a is not the socket")
	}
	seen := map[string]bool{}
	waitFor(t, 10*time.Second, "both workers answer", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		seen[strings.TrimSpace(line)] = true
		return seen[strconv.Itoa(pa)] && seen[strconv.Itoa(pb)]
	})
}

func TestStartWithUnknownSocketFailsClearly(t *testing.T) {
	h := newHarness(t)
	h.declare("w", "sleep 1000", "tie_stdin_to=nope")
	h.mustFail("command start service w", "Service 'w' cannot start: socket 'nope' is unknown")
	st := h.status("w")
	if st.state != "fail" || st.reason != "socket 'nope' is unknown" || st.pid != 0 {
		t.Fatalf("status %+v", st)
	}
	if !strings.Contains(h.logText(), "cannot start w: socket 'nope' is unknown") {
		t.Errorf("log lacks the reason")
	}
	// A declared but unbound socket is bound by the start.
	h.must("socket late host=127.0.0.1")
	h.must("socket late service=0")
	if row := h.socketRow("late"); row[2] != "unbound" {
		t.Fatalf("declared socket %q", row)
	}
	h.declare("v", "sleep 1000", "sockets=late")
	h.must("command start service v")
	if row := h.socketRow("late"); row[2] != "bound" || strings.HasSuffix(row[1], ":0") {
		t.Fatalf("start did not bind: %q", row)
	}
}

func TestBindErrorsAndUnbind(t *testing.T) {
	h := newHarness(t)
	addr := h.tcpSocket("web")
	_, port, _ := net.SplitHostPort(addr)
	h.must("socket clash host=127.0.0.1")
	h.must("socket clash service=" + port)
	h.mustFail("command bind clash", "cannot bind 127.0.0.1:"+port+": address already in use")
	if row := h.socketRow("clash"); row[2] != "unbound" {
		t.Errorf("failed bind changed state: %q", row)
	}
	h.mustFail("command bind web", "socket 'web' is already bound")
	h.mustFail("command bind nope", "unknown socket 'nope'")
	h.mustFail("socket web service=1234", "socket 'web' is bound; unbind it before changing it")
	h.must("socket missingdir service=/nonexistent/dir/x.sock")
	_, err := h.do("command bind missingdir")
	if err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("bind in a missing dir: %v", err)
	}

	h.declare("w", "sleep 1000", "sockets=web")
	h.must("command start service w")
	h.mustFail("command unbind web", "socket 'web' is in use by w: stop them first")
	h.must("command stop service w")
	h.waitState("w", "stopped")
	h.must("command unbind web")
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Errorf("unbound socket still accepts")
	}
}

func TestAcceptQueueIsReported(t *testing.T) {
	h := newHarness(t)
	h.must("socket q host=127.0.0.1")
	h.must("socket q service=0")
	h.must("socket q listen_qsize=16")
	h.must("command bind q")
	addr := h.socketRow("q")[1]
	const k = 5
	var conns []net.Conn
	for i := 0; i < k; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	waitFor(t, 5*time.Second, "queue of 5", func() bool {
		row := h.socketRow("q")
		return row[5] == strconv.Itoa(k) && row[6] == "16"
	})
	h.declare("w", helperCmd("accept"), "sockets=q")
	h.must("command start service w")
	waitFor(t, 10*time.Second, "queue drained", func() bool { return h.socketRow("q")[5] == "0" })
}
