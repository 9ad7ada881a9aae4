// Package supervisor keeps services in the state operators asked for: it
// starts them, watches them exit, respawns them by the rules of
// ControlFreak 1.0, stops them (TERM, then KILL after stopwait_secs), and
// captures their output.
//
// One goroutine, the loop in Supervisor.Run, owns every service. The
// console, the reaper and timers never touch a service: they send the loop
// an event and, where they need an answer, wait for its reply. Nothing
// polls: a child's exit arrives as SIGCHLD, a deadline as a timer, so an
// idle cfkd uses no CPU.
//
// Exactly one place reaps children (reap.go): on SIGCHLD it calls
// wait4(-1, WNOHANG) until nothing is left and routes each exit by pid to
// the service that owns it. cfkd is a child subreaper, so grandchildren a
// service leaves behind are reparented to it and reaped there too; nothing
// in cfkd may call os/exec's Wait, which would race with it.
//
// The state rules (lifecycle.go) decide; a small runner (spawn.go) forks,
// execs and signals. Service configuration is plain data (Config) so that
// it can be dumped and handed over whole.
package supervisor
