package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
	"github.com/controlfreak-go/cfk/console"
)

// cfkd is a cfkd of this repository, in the foreground, with its own home.
type cfkd struct {
	home, addr string
	proc       *benchkit.Child
	console    *console.Client
}

// startCfkd starts cfkd; with pin (a taskset CPU list) it and so every
// service it starts run on those CPUs only.
func startCfkd(bin, home, pin string) (*cfkd, error) {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	c := &cfkd{home: home, addr: "unix:" + filepath.Join(home, "sock")}
	p, err := benchkit.Start(benchkit.Spec{Log: filepath.Join(home, "cfkd.out")}, pinned(pin, bin, "--home", home, "-a", c.addr)...)
	if err != nil {
		return nil, err
	}
	c.proc = p
	if !benchkit.WaitFor(10*time.Second, 5*time.Millisecond, func() bool {
		cl, err := console.Dial(c.addr, time.Second)
		if err != nil {
			return false
		}
		c.console = cl
		return true
	}) {
		p.Stop(syscall.SIGTERM, time.Second)
		return nil, fmt.Errorf("cfkd did not serve %s (see %s/cfkd.out)", c.addr, home)
	}
	return c, nil
}

// do sends lines to the console, stopping at the first ERROR.
func (c *cfkd) do(lines ...string) ([]string, error) {
	var body []string
	for _, l := range lines {
		b, err := c.console.Do(l)
		if err != nil {
			return body, fmt.Errorf("cfkd: %q: %w", l, err)
		}
		body = append(body, b...)
	}
	return body, nil
}

// state is the state field of `command status service NAME`.
func (c *cfkd) state(name string) string {
	b, err := c.console.Do("command status service " + name)
	if err != nil || len(b) == 0 {
		return ""
	}
	return strings.Split(b[0], "\t")[1]
}

// socketPort is the port of a bound socket, from `command sockets NAME`.
func (c *cfkd) socketAddr(name string) (string, error) {
	b, err := c.do("command sockets " + name)
	if err != nil {
		return "", err
	}
	if len(b) == 0 {
		return "", fmt.Errorf("cfkd: no socket %s", name)
	}
	f := strings.Split(b[0], "\t")
	if len(f) < 2 {
		return "", fmt.Errorf("cfkd: sockets answered %q", b[0])
	}
	return f[1], nil
}

// shutdown stops every service and cfkd.
func (c *cfkd) shutdown() {
	_, _ = c.console.Do("command shutdown")
	select {
	case <-c.proc.Exited():
	case <-time.After(10 * time.Second):
		c.proc.Stop(syscall.SIGTERM, time.Second)
	}
}

func (c *cfkd) version() string {
	b, err := c.console.Do("command version")
	if err != nil || len(b) == 0 {
		return "?"
	}
	return b[0]
}

// pinned runs argv through taskset on the CPUs of pin, or as it is when
// pin is empty. taskset execs argv in its own process, so the pid stays.
func pinned(pin string, argv ...string) []string {
	if pin == "" {
		return argv
	}
	return append([]string{"taskset", "-c", pin}, argv...)
}
