#!/usr/bin/env bash
# Issue 3: does cfkd's pre-bound socket cost anything?
#   (a) throughput of 4 workers behind a cfkd socket vs the same 4 workers
#       started by hand on one socket: both pools loaded at once by balanced
#       clients (paired), then wrk on one pool after the other (throughput);
#   (b) respawn latency after SIGKILL of a `sockets=` service (cfkd's
#       /bin/sh exec step) vs `tie_stdin_to=` vs no socket.
#
#   bench/sockets/run.sh
#   ROUNDS=3 KILLS=30 bench/sockets/run.sh
#
# Knobs: PAIRED_ROUNDS=20 PAIRED_SECS=3 PIN=1 (paired: clients on CPU 0, pools on the others)
# CONTROL= (relay: a TCP relay in front of the first pool, to see the paired phase notice it)
# ROUNDS=5 (fresh pools, then a wrk run per pool and load mode) WRK_SECS=10 WRK_THREADS=2 WRK_CONNS=32
# KILLS=40 (per variant) MIN_AGE_MS=100 PHASES=paired,throughput,respawn QUIET_PCT=10
# SAME= (cfkd or hand: an A/A run, two identical pools) INSTALL=1
# WAIT_QUIET=0 (seconds to wait for a 1-minute load average under 1) KEEP=0 (keep the scratch directory) OUT=file (the report, too)
# See bench/sockets/README.md.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# --- tools -------------------------------------------------------------------
need wrk wrk
need taskset util-linux
need gcc gcc
need_static_libc
need_go
install_missing

use_scratch "$(mktemp -d /tmp/cfk-bench-sockets.XXXXXX)"

# --- build -------------------------------------------------------------------
cd "$repo"
say "building cfkd, the worker, the driver and the marker in $WORK/bin"
mkdir -p "$WORK/bin"
# -o into a directory: each binary is named after its package's directory.
go build -o "$WORK/bin/" ./cmd/cfkd ./examples/worker ./bench/sockets/driver
build_marker bench/sockets/marker.c "$WORK/bin/marker"

wait_quiet 1

# --- machine -----------------------------------------------------------------
{
	report_head bench/sockets bench/sockets/run.sh PAIRED_ROUNDS PAIRED_SECS PIN CONTROL ROUNDS WRK_SECS WRK_THREADS WRK_CONNS KILLS MIN_AGE_MS PHASES QUIET_PCT SAME
	echo "- cfkd $(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- cmd supervisor listener console examples/worker || echo ' (work tree modified)'), $(go version | cut -d' ' -f3), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
	echo "- load average before: $(loadavg)"
	echo
} >"$WORK/report.md"

say "running the driver (about $(( (${PAIRED_ROUNDS:-20} * (2 * ${PAIRED_SECS:-3} + 4) + ${ROUNDS:-5} * 4 * (${WRK_SECS:-10} + 1) + 40) / 60 + 1 )) minutes)"
run_driver "$WORK/report.md" "$WORK/bin/driver" -cfkd "$WORK/bin/cfkd" -worker "$WORK/bin/worker" \
	-marker "$WORK/bin/marker" -work "$WORK"
echo "- load average after: $(loadavg)" >>"$WORK/report.md"
cat "$WORK/report.md"
[[ -z ${OUT:-} ]] || cp "$WORK/report.md" "$OUT"
