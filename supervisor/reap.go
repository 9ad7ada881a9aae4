package supervisor

import (
	"os"
	"os/signal"
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
