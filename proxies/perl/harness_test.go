// Package perlproxy_test tests cfk-proxy.pl, the Perl proxy, as a real
// process: the fake cfkd (internal/cfkdtest.StartProxy) gives it the three
// pipes of proxies/PROTOCOL.md and listening sockets, sends it JSON
// commands, and reads its statuses and log lines. The services are small
// Perl files the tests write; what they print and what /proc says about
// them is checked.
package perlproxy_test

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/controlfreak-go/cfk/internal/cfkdtest"
	"github.com/controlfreak-go/cfk/internal/fakecfkd"
	"github.com/controlfreak-go/cfk/internal/proctest"
	"github.com/controlfreak-go/cfk/internal/testenv"
)

// TestMain removes the cfkd the end-to-end tests built.
func TestMain(m *testing.M) { cfkdtest.Main(m) }

// proxyScript is the program under test.
var proxyScript, _ = filepath.Abs("cfk-proxy.pl")

// waitTimeout bounds the tests' own waits for a condition.
const waitTimeout = 10 * time.Second

// options shape one proxy run.
type options struct {
	preload string   // the preload's Perl source ("1;" when empty)
	sockets []string // listening TCP sockets handed over, by name
	// socketsFirst puts the sockets at fds 3.. and the pipes after them,
	// so that a child asking for them in another order needs fds swapped.
	socketsFirst bool
	pauseLogs    bool     // do not read the log pipe until ReadLogs
	env          []string // more environment for the proxy
}

// harness is cfk-proxy.pl under the fake cfkd, in the directory where the
// test writes its Perl files.
type harness struct {
	*cfkdtest.Proxy
	t   *testing.T
	dir string
}

// startProxy runs cfk-proxy.pl with a fresh preload, pipes and sockets.
func startProxy(t *testing.T, o options) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir()}
	if o.preload == "" {
		o.preload = "1;\n"
	}
	h.Proxy = cfkdtest.StartProxy(t, fakecfkd.Options{
		Path:            testenv.RequireTool(t, "perl"),
		Args:            []string{proxyScript, "--preload", h.write("preload.pl", o.preload)},
		Env:             o.env,
		Sockets:         o.sockets,
		BlockingSockets: true,
		SocketsFirst:    o.socketsFirst,
		Dir:             h.dir,
		// Its own process group, as under cfkd: a signal to the test's
		// group does not reach it.
		NewProcessGroup: true,
		HoldLogs:        o.pauseLogs,
	})
	// A Perl warning from the proxy itself is a bug; looked for once the
	// proxy is gone and all its output is in.
	t.Cleanup(func() {
		h.Close()
		if out := h.Output(); strings.Contains(out, filepath.Base(proxyScript)+" line ") {
			t.Errorf("the proxy warned:\n%s", out)
		}
	})
	return h
}

func (h *harness) write(name, content string) string {
	h.t.Helper()
	p := filepath.Join(h.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// openFds lists a process's open fds, in order.
func openFds(t *testing.T, pid int) []int {
	t.Helper()
	return slices.Sorted(maps.Keys(proctest.Fds(t, pid)))
}
