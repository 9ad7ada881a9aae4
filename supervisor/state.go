package supervisor

// State is where a service is in its life, in the original's words.
type State int

// The states of SPEC 1.5.
const (
	// Stopped: never started, downed, or exited 0.
	Stopped State = iota
	// Starting: started, not yet alive for startwait_secs.
	Starting
	// Running: alive past startwait_secs.
	Running
	// Stopping: asked to stop, TERM sent, not exited yet.
	Stopping
	// Fail: terminated abnormally and not respawned.
	Fail
	// Backoff: died while starting; will be retried after a delay.
	Backoff
	// Fatal: died while starting respawn_max_retries times; given up.
	Fatal
)

var stateNames = [...]string{"stopped", "starting", "running", "stopping", "fail", "backoff", "fatal"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// Up reports whether a service in this state has a process.
func (s State) Up() bool { return s == Starting || s == Running || s == Stopping }

// failed reports whether the state carries a fail reason worth showing.
func (s State) failed() bool { return s == Fail || s == Backoff || s == Fatal }
