package pythonproxy_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/controlfreak-go/cfk/internal/cfkdtest"
	"github.com/controlfreak-go/cfk/internal/fakecfkd"
	"github.com/controlfreak-go/cfk/internal/testenv"
)

// TestMain removes the cfkd the end-to-end tests built.
func TestMain(m *testing.M) { cfkdtest.Main(m) }

// The tests' own waits: a connection, a state that no status line marks.
const (
	waitLong  = 10 * time.Second
	pollEvery = 10 * time.Millisecond
)

type options struct {
	python   string
	sockets  []string // bound by the fake cfkd, handed over at fds 6.. in this order
	args     []string // after --preload cfktestapp --path testdata
	holdLogs bool     // do not read the log pipe until ReadLogs
}

var (
	proxyPath, _   = filepath.Abs("cfk_proxy.py")
	testdataDir, _ = filepath.Abs("testdata")
)

// startProxy runs cfk_proxy.py under the fake cfkd, as cfkd would,
// preloading testdata's cfktestapp. The proxy runs without the caller's
// PYTHONUNBUFFERED, so that output buffering is the default one.
func startProxy(t *testing.T, o options) *cfkdtest.Proxy {
	t.Helper()
	return cfkdtest.StartProxy(t, fakecfkd.Options{
		Path:            o.python,
		Args:            append([]string{proxyPath, "--preload", "cfktestapp", "--path", testdataDir}, o.args...),
		Unsetenv:        []string{"PYTHONUNBUFFERED"},
		Sockets:         o.sockets,
		BlockingSockets: true,
		HoldLogs:        o.holdLogs,
	})
}

// pythons lists the interpreters to test: python3 on PATH, and Debian's
// /usr/bin/python3 when it is another one.
func pythons(t *testing.T) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	for _, p := range []string{testenv.RequireTool(t, "python3"), "/usr/bin/python3"} {
		b, err := exec.Command(p, "-c", "import sys; print(sys.executable)").Output()
		if err != nil {
			continue
		}
		exe := strings.TrimSpace(string(b))
		if real, err := filepath.EvalSymlinks(exe); err == nil && !seen[real] {
			seen[real] = true
			out = append(out, exe)
		}
	}
	if len(out) == 0 {
		testenv.Missing(t, "python3 does not run")
	}
	return out
}
