package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// notifier speaks sd_notify to the service manager that started cfkd
// (Type=notify units). Without NOTIFY_SOCKET every call is a no-op.
type notifier struct {
	watchdog time.Duration // 0: no watchdog asked for
	stop     chan struct{}
	once     sync.Once
}

func newNotifier() *notifier {
	n := &notifier{stop: make(chan struct{})}
	// Ping at half the interval, as sd_watchdog_enabled(3) advises.
	if d, err := daemon.SdWatchdogEnabled(false); err == nil && d > 0 {
		n.watchdog = d / 2
	}
	return n
}

func (n *notifier) send(state string) { _, _ = daemon.SdNotify(false, state) }

// ready says cfkd is serving, with a one-line status. alive must answer
// only when cfkd's loop does: the watchdog is fed through it, so a stuck
// loop starves the watchdog and systemd restarts cfkd.
func (n *notifier) ready(status string, alive func() bool) {
	n.send(daemon.SdNotifyReady + "\nSTATUS=" + status)
	if n.watchdog > 0 {
		go n.ping(alive)
	}
}

// stopping says cfkd is going down.
func (n *notifier) stopping() {
	n.once.Do(func() {
		close(n.stop)
		n.send(daemon.SdNotifyStopping + "\nSTATUS=stopping every service")
	})
}

// ping keeps systemd's watchdog fed. It runs only when the unit asked for
// a watchdog, so an unwatched cfkd has no timer at all.
func (n *notifier) ping(alive func() bool) {
	t := time.NewTicker(n.watchdog)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if alive() {
				n.send(daemon.SdNotifyWatchdog)
			}
		case <-n.stop:
			return
		}
	}
}

func statusLine(addr string, services int) string {
	return fmt.Sprintf("serving on %s; %d services declared", addr, services)
}
