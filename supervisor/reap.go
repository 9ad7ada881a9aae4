package supervisor

import (
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// BecomeSubreaper makes cfkd the reaper of every process its services
// leave behind (PR_SET_CHILD_SUBREAPER), so no orphan of a service ends up
// a zombie under init or escapes a stop.
func BecomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// startReaper is the one place that waits for children. On each SIGCHLD
// it reaps every child that has exited and sends each exit to the loop.
// Signals coalesce, so it always drains with WNOHANG until none is left.
func startReaper(s *Supervisor) (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			reapAll(s)
			select {
			case <-sigs:
			case <-quit:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(quit)
		<-done
	}
}

func reapAll(s *Supervisor) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if !s.send(exitEvent{pid: pid, status: ws}) {
			return
		}
	}
}

// CloseInheritedOnExec marks every fd above stderr that cfkd inherited as
// close-on-exec. Whatever started cfkd may have leaked descriptors to it
// (a shell's pipes, a test runner's files); without this they would leak
// on into every service. Sockets handed over on purpose (LISTEN_FDS) are
// adopted by name, not inherited blindly.
func CloseInheritedOnExec() error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		syscall.CloseOnExec(fd)
	}
	return nil
}
