#!/usr/bin/env bash
# Benchmark cfkd against supervisord, runit and s6, side by side, in one run.
#
#   bench/run.sh                      # everything, defaults below
#   KILLS=50 SERVICES=500 bench/run.sh
#
# Knobs (environment): KILLS=30 RESPAWN_SERVICES=5 SERVICES=1000
# STATUS_RUNS=20 IDLE_SECS=10 MIN_AGE_MS=1200 SETTLE_MS=1500
# SUPERVISORS=cfkd,supervisord,runit,s6  RUN_SCRIPT= (sh|execline: runit and
# s6 run files exec the marker from a script)  INSTALL=1 (apt-get the peers if
# missing)  WAIT_QUIET=0 (seconds to wait for a 1-min load average < 0.5,
# and before each supervisor for 2 s with the machine < 5% busy)
# RETRY_BUSY=0 (measure a supervisor again when other processes took >5% of
# the CPUs meanwhile)  NICE=0 (e.g. -20 as root: run everything measured at that niceness, on a
# machine shared with other work)
# WORK=<scratch dir, default a new /tmp/cfk-bench.*>  KEEP=0 (keep WORK)
# OUT=<file for the markdown report, default $WORK/report.md>
#
# See bench/README.md for what each number means.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${SUPERVISORS:=cfkd,supervisord,runit,s6}"
: "${NICE:=0}"
export SUPERVISORS WAIT_QUIET

# The exact command, for the report: the knobs that were set, then argv.
cmdline=""
for v in KILLS RESPAWN_SERVICES SERVICES STATUS_RUNS IDLE_SECS MIN_AGE_MS SETTLE_MS SUPERVISORS RUN_SCRIPT RETRY_BUSY WAIT_QUIET NICE; do
	if [[ -n "${!v:-}" && ! ( $v == SUPERVISORS && ${!v} == cfkd,supervisord,runit,s6 ) && ! ( ( $v == NICE || $v == WAIT_QUIET ) && ${!v} == 0 ) ]]; then
		cmdline+="$v=${!v} "
	fi
done
export BENCH_COMMAND="${cmdline}bench/run.sh${*:+ $*}"

wants() { [[ ",$SUPERVISORS," == *",$1,"* ]]; }

# --- peers -----------------------------------------------------------------
# Debian package names (apt-cache policy): supervisor (supervisord,
# supervisorctl), runit (runsvdir, runsv, sv), s6 (s6-svscan, s6-supervise,
# s6-svc, s6-svstat; pulls execline and skalibs). gcc and libc6-dev build
# the marker (libc6-dev has the static libc).
wants supervisord && { need supervisord supervisor; need supervisorctl supervisor; }
wants runit && { need runsvdir runit; need runsv runit; need sv runit; }
wants s6 && { need s6-svscan s6; need s6-supervise s6; need s6-svc s6; need s6-svstat s6; }
need gcc gcc
need_static_libc
need_go
install_missing

# --- scratch directory and cleanup -----------------------------------------
use_scratch "${WORK:-$(mktemp -d /tmp/cfk-bench.XXXXXX)}"
BIN=$WORK/bin
mkdir -p "$BIN"
OUT=${OUT:-$WORK/report.md}

# --- build -----------------------------------------------------------------
cd "$repo"
if wants cfkd; then
	say "building cfkd and cfkctl"
	go build -o "$BIN/cfkd" ./cmd/cfkd
	go build -o "$BIN/cfkctl" ./cmd/cfkctl
fi
say "building the driver"
go build -o "$BIN/driver" ./bench/driver
say "building the marker"
build_marker bench/marker/marker.c "$BIN/marker"

# --- run -------------------------------------------------------------------
# 1000 services under supervisord need about 3000 descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

wait_quiet 0.5
awk '{exit !($1 >= 1)}' /proc/loadavg && say "warning: load average $(cut -d' ' -f1 /proc/loadavg): something else is running; figures will be noisy"

args=(-marker "$BIN/marker" -work "$WORK")
wants cfkd && args+=(-cfkd "$BIN/cfkd" -cfkctl "$BIN/cfkctl")
say "measuring $SUPERVISORS (about 1 minute each)"
# The driver, the supervisors and their services all inherit the niceness.
: >"$OUT"
run_driver "$OUT" nice -n "$NICE" "$BIN/driver" "${args[@]}"
cat "$OUT"
[[ $KEEP == 1 || $OUT != "$WORK"/* ]] || say "(report not kept; set OUT=file or KEEP=1)"
