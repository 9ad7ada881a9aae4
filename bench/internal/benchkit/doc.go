// Package benchkit is what the three benchmark drivers (bench/driver,
// bench/sockets/driver and bench/restart/driver) share: running wrk and
// reading its report, nearest-rank statistics, starting the programs
// under test in process groups of their own and killing those groups
// however the driver ends, and reading /proc.
//
// It exists so that the drivers measure with one piece of code: a fix to
// how wrk's latencies are parsed, or to what "the machine was busy"
// means, then reaches every report at once instead of one copy of three.
// Each driver keeps what is its own (its peers, its phases, its report).
package benchkit
