package supervisor

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/controlfreak-go/cfk/eventlog"
)

// A rolling restart restarts services in batches: a batch's new processes
// must be ready (running, or READY=1 under ready=notify) before the next
// batch is touched. If a new process fails, it stops there and leaves the
// rest running their old code. It lives in the loop, so it goes on when
// the cfkctl that asked for it is interrupted; `command rollstatus` shows
// its progress.
type rollingOp struct {
	id      int
	names   []string
	batch   int
	overlap bool // start each new process beside the old one (overlap.go)
	next    int  // index of the first service not yet touched
	pending int  // services of the current batch not yet ready
	state   string
	msg     string
	started time.Time
	ended   time.Time
}

func (op *rollingOp) line() string {
	done := op.next - op.pending
	if done < 0 {
		done = 0
	}
	return strings.Join([]string{strconv.Itoa(op.id), op.state,
		fmt.Sprintf("%d/%d", done, len(op.names)), op.msg}, "\t")
}

// maxRollingKept bounds how many finished operations rollstatus remembers.
const maxRollingKept = 16

// cmdRollRestart answers `command rollrestart SELECTOR [BATCH [overlap]]`
// with the operation's id; the restart goes on in the loop.
func (s *Supervisor) cmdRollRestart(args []string, done func([]string, error)) {
	batch := 1
	overlap := false
	// "overlap" counts only after a batch size, so that a service called
	// overlap can still be selected.
	if n := len(args); n > 2 && args[n-1] == "overlap" {
		if _, err := strconv.Atoi(args[n-2]); err == nil {
			overlap, args = true, args[:n-1]
		}
	}
	if n := len(args); n > 1 {
		if k, err := strconv.Atoi(args[n-1]); err == nil {
			if k < 1 {
				done(nil, errors.New("the batch size must be at least 1"))
				return
			}
			batch, args = k, args[:n-1]
		}
	}
	if s.shuttingDown {
		done(nil, ErrShuttingDown)
		return
	}
	svcs, err := s.selectServices(args)
	if err != nil {
		done(nil, err)
		return
	}
	var names []string
	for _, svc := range svcs {
		if svc.isUp() {
			names = append(names, svc.name)
		}
	}
	if len(names) == 0 {
		done(nil, errors.New("no service of that selection is up: nothing to restart"))
		return
	}
	for _, op := range s.rolling {
		if op.state == "running" {
			for _, a := range op.names {
				for _, b := range names {
					if a == b {
						done(nil, fmt.Errorf("rolling restart %d is already restarting %s", op.id, a))
						return
					}
				}
			}
		}
	}
	s.rollingSeq++
	op := &rollingOp{id: s.rollingSeq, names: names, batch: batch, overlap: overlap, state: "running", started: time.Now()}
	s.rolling = append(s.rolling, op)
	if len(s.rolling) > maxRollingKept {
		s.rolling = s.rolling[len(s.rolling)-maxRollingKept:]
	}
	how := ""
	if overlap {
		how = ", each new process beside the old one"
	}
	s.logf(eventlog.Info, "rolling restart %d: %d services in batches of %d%s", op.id, len(names), batch, how)
	done([]string{fmt.Sprintf("rolling restart %d: %d services in batches of %d%s", op.id, len(names), batch, how)}, nil)
	s.rollNext(op)
}

// rollNext restarts the next batch, or ends the operation.
func (s *Supervisor) rollNext(op *rollingOp) {
	if op.state != "running" {
		return
	}
	if op.next >= len(op.names) {
		op.state, op.ended = "done", time.Now()
		op.msg = fmt.Sprintf("restarted %d services in %.2fs", len(op.names), op.ended.Sub(op.started).Seconds())
		s.logf(eventlog.Info, "rolling restart %d: %s", op.id, op.msg)
		return
	}
	end := min(op.next+op.batch, len(op.names))
	batch := op.names[op.next:end]
	op.next = end
	op.pending = len(batch)
	op.msg = "restarting " + strings.Join(batch, ", ")
	for _, name := range batch {
		svc := s.services[name]
		if svc == nil {
			s.rollFail(op, fmt.Sprintf("%s was destroyed", name))
			return
		}
		restart := s.restart
		if op.overlap {
			restart = s.restartOverlapping
		}
		if err := restart(svc); err != nil {
			s.rollFail(op, fmt.Sprintf("%s: %v", name, err))
			return
		}
		svc.readyHooks = append(svc.readyHooks, func(ok bool) {
			if op.state != "running" {
				return
			}
			if !ok {
				s.rollFail(op, fmt.Sprintf("%s failed to start (%s); the services not yet restarted keep their old processes", name, svc.failReason))
				return
			}
			op.pending--
			if op.pending == 0 {
				s.rollNext(op)
			}
		})
	}
}

func (s *Supervisor) rollFail(op *rollingOp, msg string) {
	op.state, op.msg, op.ended = "failed", msg, time.Now()
	s.logf(eventlog.Error, "rolling restart %d stopped: %s", op.id, msg)
}

// cmdRollStatus answers `command rollstatus [ID]`: per operation, tab
// separated, `id state done/total message`; state is running, done or
// failed.
func (s *Supervisor) cmdRollStatus(args []string, done func([]string, error)) {
	var out []string
	for _, op := range s.rolling {
		if len(args) > 0 && args[0] != strconv.Itoa(op.id) {
			continue
		}
		out = append(out, op.line())
	}
	if len(args) > 0 && len(out) == 0 {
		done(nil, fmt.Errorf("no rolling restart %s", args[0]))
		return
	}
	done(out, nil)
}
