package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"

	"github.com/controlfreak-go/cfk/supervisor"
)

// readHandover reads the document the previous cfkd left for this one
// when it re-executed in place (`command upgrade`); nil when this is a
// fresh start.
func readHandover() (*supervisor.Handover, error) {
	v := os.Getenv(supervisor.EnvHandover)
	if v == "" {
		return nil, nil
	}
	os.Unsetenv(supervisor.EnvHandover)
	fd, err := strconv.Atoi(v)
	if err != nil {
		return nil, fmt.Errorf("upgrade: bad %s=%q", supervisor.EnvHandover, v)
	}
	f := os.NewFile(uintptr(fd), "handover")
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("upgrade: read the handover document: %w", err)
	}
	return supervisor.ReadHandover(b)
}

// upgradeCheck is `cfkd --upgrade-check`: the running cfkd asks whether
// this binary can resume from its document (on stdin) before it execs it.
func upgradeCheck() error {
	b, err := io.ReadAll(os.Stdin)
	if err == nil {
		_, err = supervisor.ReadHandover(b)
	}
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("ok")
	return nil
}

// listenerFromFd takes back the console listener the previous cfkd held.
func listenerFromFd(fd int) (net.Listener, error) {
	f := os.NewFile(uintptr(fd), "console")
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("upgrade: console socket: %w", err)
	}
	return l, nil
}

// rawFd is a listener's fd, read without changing its blocking mode.
func rawFd(l net.Listener) (int, error) {
	sc, ok := l.(syscall.Conn)
	if !ok {
		return 0, fmt.Errorf("%T has no fd", l)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var fd int
	err = rc.Control(func(raw uintptr) { fd = int(raw) })
	return fd, err
}
