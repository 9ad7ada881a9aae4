#!/usr/bin/env bash
# Issue 5: restarting a pool of 4 HTTP workers under load, with cfkd's
# rolling restart and with supervisord, Server::Starter + Starman and
# gunicorn; the time for 8 workers; cfkd's console silence during an
# in-place upgrade.
#
#   bench/restart/run.sh
#   REPS=1 CASES=cfkd1,gunicorn PHASES=restart bench/restart/run.sh
#
# Knobs: REPS=3 WRK_SECS=10 WRK_THREADS=2 WRK_CONNS=16 RESTART_AT_MS=2000
# WORKERS=4 BIG_WORKERS=8 BIG_REPS=1 BIG_WRK_SECS=6 UPGRADES=20
# STARTER_INTERVAL=1 CASES=cfkd1,cfkd2,cfkd1o,cfkd2o,cfkdgunicorn,supervisord,supervisord1by1,starman,gunicorn
# BIG_CASES=cfkd1,cfkd2,cfkd1o,cfkd2o,supervisord1by1,starman,gunicorn
# PHASES=restart,big,upgrade INSTALL=1 WAIT_QUIET=0 (seconds to wait for a
# 1-minute load average under 1) KEEP=0 (keep the scratch directory)
# OUT=file (the report, too). See bench/restart/README.md.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# --- peers -------------------------------------------------------------------
# Debian packages: supervisor (supervisord, supervisorctl), libserver-starter-perl
# (start_server), starman, gunicorn, wrk.
need wrk wrk
need supervisord supervisor
need start_server libserver-starter-perl
need starman starman
[[ -x /usr/bin/gunicorn ]] || missing+=(gunicorn)
need_go
install_missing

use_scratch "$(mktemp -d /tmp/cfk-bench-restart.XXXXXX)"

# --- build -------------------------------------------------------------------
cd "$repo"
say "building cfkd, cfkctl, the worker and the driver in $WORK/bin"
mkdir -p "$WORK/bin"
# -o into a directory: each binary is named after its package's directory.
go build -o "$WORK/bin/" ./cmd/cfkd ./cmd/cfkctl ./examples/worker ./bench/restart/driver

# Does the example worker say READY=1? Then cfkd's services use
# ready=notify and a rolling restart moves on as soon as each new worker
# serves; otherwise startwait_secs=0.2.
ready=()
readiness="startwait_secs=0.2 (the worker sends no READY=1)"
if grep -q 'SdNotifyReady\|READY=1' examples/worker/main.go; then
	ready=(-ready-notify)
	readiness="ready=notify (the worker sends READY=1 once it serves)"
fi

wait_quiet 1

# --- machine -----------------------------------------------------------------
{
	report_head bench/restart bench/restart/run.sh REPS WRK_SECS WRK_THREADS WRK_CONNS RESTART_AT_MS WORKERS BIG_WORKERS BIG_REPS BIG_WRK_SECS UPGRADES STARTER_INTERVAL CASES BIG_CASES PHASES
	echo "- cfkd $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- cmd supervisor listener console examples || echo ' (work tree modified)'), $(go version | cut -d' ' -f3); cfkd services: $readiness"
	echo "- peers: supervisor $(dpkg-query -W -f '${Version}' supervisor), libserver-starter-perl $(dpkg-query -W -f '${Version}' libserver-starter-perl), starman $(dpkg-query -W -f '${Version}' starman), gunicorn $(dpkg-query -W -f '${Version}' gunicorn), wrk $(dpkg-query -W -f '${Version}' wrk); $(/usr/bin/python3 --version), perl $(perl -e 'print substr($^V, 1)')"
	echo "- load average before: $(loadavg)"
	echo
} >"$WORK/report.md"

say "running the driver (about 5 minutes)"
run_driver "$WORK/report.md" "$WORK/bin/driver" -cfkd "$WORK/bin/cfkd" -cfkctl "$WORK/bin/cfkctl" \
	-worker "$WORK/bin/worker" "${ready[@]}" -work "$WORK"
echo "- load average after: $(loadavg)" >>"$WORK/report.md"
cat "$WORK/report.md"
[[ -z ${OUT:-} ]] || cp "$WORK/report.md" "$OUT"
