package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

// cfkd is the daemon of this repository, driven through its management
// socket (API) or cfkctl (CLI).
type cfkd struct {
	bin, ctl, marker string
	home, sock       string
	n                int
	p                *benchkit.Child
	console          *consoleConn
}

func (c *cfkd) name() string { return "cfkd" }

func (c *cfkd) version() string {
	body, err := c.console.do("command version")
	if err != nil || len(body) == 0 {
		return "(unknown)"
	}
	return strings.Join(body, " ")
}

func (c *cfkd) tuning() string {
	return "each service: `cmd=[\"marker\",FILE]` (JSON array: exec'd directly, no shell), " +
		"`ignore_stdout=1`, `ignore_stderr=1` (no output pipes), `tags=bench`; " +
		"defaults otherwise (`startwait_secs=1`, `respawn_on_fail=1`). " +
		"Daemon in the foreground: `cfkd --home DIR -a unix:DIR/sock`."
}

func (c *cfkd) launch(dir string, n int, markerFile string) error {
	c.n = n
	c.home = filepath.Join(dir, "home")
	c.sock = filepath.Join(c.home, "sock")
	if err := os.MkdirAll(c.home, 0o755); err != nil {
		return err
	}
	p, err := benchkit.Start(benchkit.Spec{Dir: dir, Log: filepath.Join(dir, "cfkd.out"), KeepManagerEnv: true}, c.bin, "--home", c.home, "-a", "unix:"+c.sock)
	if err != nil {
		return err
	}
	c.p = p
	if !benchkit.WaitFor(10*time.Second, 5*time.Millisecond, func() bool {
		if !p.Running() {
			return true
		}
		cc, err := dialConsole(c.sock)
		if err != nil {
			return false
		}
		c.console = cc
		return true
	}) || c.console == nil {
		return fmt.Errorf("cfkd did not open %s (see %s/cfkd.out)", c.sock, dir)
	}
	cmd, _ := json.Marshal([]string{c.marker, markerFile})
	for i := 0; i < n; i++ {
		name := serviceName(i)
		for _, line := range []string{
			fmt.Sprintf("service %s cmd=%s", name, cmd),
			fmt.Sprintf("service %s ignore_stdout=1", name),
			fmt.Sprintf("service %s ignore_stderr=1", name),
			fmt.Sprintf("service %s tags=bench", name),
		} {
			if _, err := c.console.do(line); err != nil {
				return fmt.Errorf("cfkd: %q: %w", line, err)
			}
		}
	}
	return nil
}

func (c *cfkd) root() int { return c.p.Pid() }

// expectDone checks a `done N` answer to a start or down of everything.
func (c *cfkd) expectDone(body []string) error {
	want := fmt.Sprintf("done %d", c.n)
	if len(body) != 1 || strings.TrimSpace(body[0]) != want {
		return fmt.Errorf("cfkd answered %q, want %q", body, want)
	}
	return nil
}

func (c *cfkd) startAll(v via) error {
	if v == viaCLI {
		_, err := run([]string{c.ctl, "-a", "unix:" + c.sock, "start", "all"})
		return err
	}
	body, err := c.console.do("command start all")
	if err != nil {
		return err
	}
	return c.expectDone(body)
}

func (c *cfkd) downAll(v via) error {
	if v == viaCLI {
		_, err := run([]string{c.ctl, "-a", "unix:" + c.sock, "down", "all"})
		return err
	}
	body, err := c.console.do("command down all")
	if err != nil {
		return err
	}
	return c.expectDone(body)
}

func (c *cfkd) status(v via) (int, error) {
	if v == viaCLI {
		out, err := run([]string{c.ctl, "-a", "unix:" + c.sock, "status"})
		return countLines(out), err
	}
	body, err := c.console.do("command status")
	return len(body), err
}

// stop sends `command shutdown` and waits for the daemon to exit; the
// connection may close before or after the final OK.
func (c *cfkd) stop() error {
	if c.p == nil {
		return nil
	}
	if c.console != nil {
		c.console.do("command shutdown")
		c.console.close()
	}
	return c.p.Wait(30 * time.Second)
}

// consoleConn speaks the management protocol: one command a line; the
// answer is body lines ending in "\n", then `OK\r\n` or `ERROR: ...\r\n`.
type consoleConn struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialConsole(path string) (*consoleConn, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	return &consoleConn{conn: conn, r: bufio.NewReaderSize(conn, 256<<10)}, nil
}

func (c *consoleConn) close() { c.conn.Close() }

func (c *consoleConn) do(line string) ([]string, error) {
	c.conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.conn.Write([]byte(line + "\n")); err != nil {
		return nil, err
	}
	var body []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return body, fmt.Errorf("answer to %q cut short: %w", line, err)
		}
		if strings.HasSuffix(l, "\r\n") {
			l = strings.TrimSuffix(l, "\r\n")
			if l == "OK" {
				return body, nil
			}
			if strings.HasPrefix(l, "ERROR:") {
				return body, fmt.Errorf("%s", l)
			}
		}
		body = append(body, strings.TrimSuffix(l, "\n"))
	}
}
