package supervisor

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// service is one service: what was declared (cfg) and what is happening
// to it. Only the loop goroutine touches it.
type service struct {
	name  string
	cfg   Config
	proxy string // the proxy that runs it, "" for cfkd itself

	state      State
	pid        int
	pgid       int // the process group signalled on stop; 0 when not our own
	startTime  time.Time
	stopTime   time.Time
	runningCmd string

	// Why the last process ended abnormally, in the original's words.
	exitStatus syscall.WaitStatus
	failReason string

	wantsDown    bool // the operator asked it down: no respawn
	normalExit   bool // the last exit was a clean exit 0
	backoffRetry int  // failed starts in a row

	// Each timer kind has a generation: a timer that fires after it was
	// cancelled or re-armed carries an old generation and is ignored.
	timerGen  [timerKinds]uint64
	timers    [timerKinds]func() bool
	deadlines [timerKinds]time.Time // when each armed timer fires

	// Things to do once the service is down (restart, destroy, shutdown).
	whenDown []func()
	// Things to do once a start has succeeded (running, or READY=1 under
	// ready=notify) or failed: rolling restarts wait on them.
	readyHooks []func(ok bool)

	// What the service said on its notify socket.
	ready         bool
	reloading     bool
	notifyStatus  string
	pendingReason string // why cfkd killed it, kept for its exit
}

// timerKind names a service's deadlines.
type timerKind int

const (
	startTimer    timerKind = iota // startwait_secs: starting → running
	stopTimer                      // stopwait_secs: stopping → KILL
	backoffTimer                   // backoff delay: backoff → starting
	watchdogTimer                  // watchdog_secs without WATCHDOG=1
	timerKinds
)

// isUp is the original's is_up: a process exists for the service.
// A proxied service is up from its start, before the proxy reports a pid.
func (s *service) isUp() bool { return s.state.Up() }

// exitReason renders a wait status as the original did.
func exitReason(ws syscall.WaitStatus) string {
	var parts []string
	if ws.Exited() {
		if ws.ExitStatus() != 0 {
			parts = append(parts, fmt.Sprintf("Exited with error %d", ws.ExitStatus()))
		} else {
			parts = append(parts, "Exited successfuly")
		}
	}
	if ws.Signaled() {
		parts = append(parts, fmt.Sprintf("Received signal %d", int(ws.Signal())))
	}
	return strings.Join(parts, " - ")
}

func epoch(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.Unix(), 10)
}

func itoa0(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// statusText is what the service last said with STATUS= (and whether it
// is reloading): a ninth field of status, a sixth of desc, which the
// original's clients ignore.
func (s *service) statusText() string {
	if !s.isUp() {
		return ""
	}
	if s.reloading {
		return strings.TrimSpace("reloading " + s.notifyStatus)
	}
	return s.notifyStatus
}

// noTabs keeps a field of a tab-separated line in its column (a command
// may hold a tab; `command dump` gives it exactly).
func noTabs(s string) string { return strings.ReplaceAll(s, "\t", " ") }

// statusLine is `command status`'s line: name state pid start_time
// stop_time proxy fail_reason running_cmd, tab separated.
func (s *service) statusLine(proxy string) string {
	reason := ""
	if s.state.failed() {
		reason = s.failReason
	}
	return strings.Join([]string{
		s.name, s.state.String(), itoa0(s.pid), epoch(s.startTime), epoch(s.stopTime),
		proxy, reason, noTabs(s.runningCmd), s.statusText(),
	}, "\t")
}

// descLine is `command desc`'s line: name tags desc proxy cmd.
func (s *service) descLine(proxy string) string {
	return strings.Join([]string{
		s.name, strings.Join(s.cfg.Tags, ", "), s.cfg.Desc, proxy, noTabs(s.cfg.CmdText()), s.statusText(),
	}, "\t")
}
