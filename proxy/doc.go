// Package proxy is cfkd's side of the proxy protocol (proxies/PROTOCOL.md):
// the messages cfkd and a proxy program exchange, and the pipes that carry
// them.
//
// A proxy is a process cfkd starts so that it forks services on cfkd's
// behalf: the proxy loads an application once and its workers share that
// memory copy-on-write. To the supervisor a proxy is just another way to
// run a service: it reports the same two events, started(pid) and
// exited(wait status), so the state machine never knows which runner it
// has.
//
// Everything that comes from a proxy is untrusted input: lines are
// bounded, malformed ones are reported (at a bounded rate) and dropped,
// and nothing a proxy writes can block cfkd's loop or grow its memory
// without end. Commands to a proxy are queued on a bounded channel and
// written by their own goroutine, so a proxy that stops reading cannot
// stall cfkd either.
package proxy
