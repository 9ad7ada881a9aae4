package cfkproxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/controlfreak-go/cfk/internal/cfkdtest"
	"github.com/controlfreak-go/cfk/internal/fakecfkd"
)

// The test binary doubles as a proxy program (the os/exec tests'
// pattern): with envTestApp set, TestMain runs testApp through Main, and
// the workers that proxy re-executes are the test binary too.
const (
	envTestApp         = "CFKPROXY_TEST_APP"
	envTestSize        = "CFKPROXY_TEST_SIZE"         // bytes Preload writes
	envTestPreloadFail = "CFKPROXY_TEST_PRELOAD_FAIL" // Preload returns an error
)

// startFds is the fd table the process had when TestMain began, before
// anything in it opened a file: in a worker, exactly what exec handed it.
var startFds map[int]string

func TestMain(m *testing.M) {
	if os.Getenv(envTestApp) != "" {
		startFds = probeFds()
		Main(testApp)
	}
	cfkdtest.Main(m)
}

// probeFds lists the fds that survived exec, and what they are, without
// opening any. An fd that survived exec has FD_CLOEXEC clear, while the
// ones the Go runtime opens for itself before TestMain (cgroup files for
// GOMAXPROCS) are close-on-exec.
func probeFds() map[int]string {
	fds := map[int]string{}
	for fd := 0; fd < 1024; fd++ {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue
		}
		target, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		fds[fd] = target
	}
	return fds
}

// testPattern is what testApp's Preload writes: n deterministic bytes.
func testPattern(n int) []byte {
	b := make([]byte, (n+7)/8*8)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], uint64(i)*0x9e3779b97f4a7c15)
	}
	return b[:n]
}

var testApp = App{
	Preload: func(w io.Writer) error {
		if os.Getenv(envTestPreloadFail) != "" {
			return errors.New("the test asked Preload to fail")
		}
		n, _ := strconv.Atoi(os.Getenv(envTestSize))
		_, err := w.Write(testPattern(n))
		return err
	},
	Serve: testServe,
}

// testServe does what the service's cmd says:
//
//	serve        HTTP on every socket: /info describes the worker
//	exit N       exit N at once
//	print WORD   "WORD stdout" on stdout, "WORD stderr" on stderr, then serve
//	stubborn     say "ready" on stdout, serve, and ignore the stop (ctx)
func testServe(ctx context.Context, w *Worker) error {
	verb := "serve"
	if len(w.Cmd) > 0 {
		verb = w.Cmd[0]
	}
	arg := ""
	if len(w.Cmd) > 1 {
		arg = w.Cmd[1]
	}
	switch verb {
	case "exit":
		n, _ := strconv.Atoi(arg)
		os.Exit(n)
	case "print":
		fmt.Println(arg + " stdout")
		fmt.Fprintln(os.Stderr, arg+" stderr")
	case "stubborn":
		ctx = context.Background()
		fmt.Println("ready") // Main catches TERM by now
	case "serve":
	default:
		return fmt.Errorf("unknown cmd %q", verb)
	}
	sum := sha256.Sum256(w.Shared)
	info := workerInfo{
		Pid:           os.Getpid(),
		ListenPid:     os.Getenv("LISTEN_PID"),
		ListenFds:     os.Getenv("LISTEN_FDS"),
		ListenFdNames: os.Getenv("LISTEN_FDNAMES"),
		Fds:           startFds,
		SharedLen:     len(w.Shared),
		SharedSHA256:  hex.EncodeToString(sum[:]),
		Env:           os.Environ(),
		Cmd:           w.Cmd,
		HasStdin:      w.Stdin != nil,
		Names:         w.ListenerNames,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/info", func(rw http.ResponseWriter, r *http.Request) {
		json.NewEncoder(rw).Encode(info)
	})
	srv := &http.Server{Handler: mux}
	for _, l := range w.AllListeners() {
		go srv.Serve(l)
	}
	<-ctx.Done()
	srv.Close()
	return nil
}

// workerInfo is what a test worker says about itself on /info.
type workerInfo struct {
	Pid           int            `json:"pid"`
	ListenPid     string         `json:"listen_pid"`
	ListenFds     string         `json:"listen_fds"`
	ListenFdNames string         `json:"listen_fdnames"`
	Fds           map[int]string `json:"fds"`
	SharedLen     int            `json:"shared_len"`
	SharedSHA256  string         `json:"shared_sha256"`
	Env           []string       `json:"env"`
	Cmd           []string       `json:"cmd"`
	HasStdin      bool           `json:"has_stdin"`
	Names         []string       `json:"names"`
}

// Test timeouts.
const (
	statusWait = 20 * time.Second
	exitWait   = 20 * time.Second
)

// startTestProxy runs the test binary as a proxy under a fake cfkd.
func startTestProxy(t *testing.T, sharedBytes int, sockets []string, env ...string) *fakecfkd.Proxy {
	t.Helper()
	return startTestProxyOut(t, os.Stderr, sharedBytes, sockets, env...)
}

// startTestProxyOut is startTestProxy with the proxy's own stdout and
// stderr going to out.
func startTestProxyOut(t *testing.T, out *os.File, sharedBytes int, sockets []string, env ...string) *fakecfkd.Proxy {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Under -race the race runtime sleeps 1 s before every exit
	// (atexit_sleep_ms), which would slow every proxy and worker exit.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	env = append([]string{envTestApp + "=1", envTestSize + "=" + strconv.Itoa(sharedBytes), "GORACE=" + gorace}, env...)
	p, err := fakecfkd.Start(fakecfkd.Options{
		Path:    self,
		Args:    []string{"-test.run=^$"},
		Env:     env,
		Sockets: sockets,
		Home:    t.TempDir(),
		Stdout:  out,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// example is the example proxy, built without the race detector, so that
// what the memory test measures is what an operator would run.
var example = &cfkdtest.Program{Package: "./example"}

// getInfo asks a test worker about itself through addr.
func getInfo(t *testing.T, addr string) workerInfo {
	t.Helper()
	var info workerInfo
	body := httpGet(t, "http://"+addr+"/info")
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatalf("/info: %v: %q", err, body)
	}
	return info
}

var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}

// pss is the proportional set size of pid in kB, from smaps_rollup.
func pss(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("no Pss in smaps_rollup of %d", pid)
}
