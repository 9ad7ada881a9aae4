package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/controlfreak-go/cfk/bench/internal/benchkit"
)

// The relay (-relay) is the paired phase's sensitivity check, CONTROL=relay:
// a plain TCP relay in front of the first pool, what a supervisor that
// sat on the data path would add (one process copying every byte both
// ways). If the paired measurement could not see that, its ≥ 0.98 would
// prove nothing.

// runRelay listens on 127.0.0.1, any port, writes the address to
// addrFile and relays every connection to target until killed.
func runRelay(target, addrFile string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if err := os.WriteFile(addrFile+".tmp", []byte(l.Addr().String()+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(addrFile+".tmp", addrFile); err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer u.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(u, c)
				_ = u.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			_, _ = io.Copy(c, u)
			_ = c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}

// behindRelay puts a relay, on the pools' CPUs, in front of p.
func behindRelay(p *pool, dir, pin string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	addrFile := filepath.Join(dir, "relay.addr")
	r, err := benchkit.Start(benchkit.Spec{Log: filepath.Join(dir, "relay.out")},
		pinned(pin, self, "-relay", p.addr(), "-addr-file", addrFile)...)
	if err != nil {
		return err
	}
	var addr string
	if !benchkit.WaitFor(10*time.Second, 10*time.Millisecond, func() bool {
		b, err := os.ReadFile(addrFile)
		addr = strings.TrimSpace(string(b))
		return err == nil
	}) {
		r.Stop(syscall.SIGKILL, 0)
		return fmt.Errorf("the relay did not listen (see %s/relay.out)", dir)
	}
	stop := p.stop
	p.name += " behind a relay"
	p.url = "http://" + addr + "/"
	p.stop = func() {
		r.Stop(syscall.SIGKILL, 0)
		stop()
	}
	return nil
}
