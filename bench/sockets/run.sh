#!/usr/bin/env bash
# Issue 3: does cfkd's pre-bound socket cost anything?
#   (a) throughput of 4 workers behind a cfkd socket vs the same 4 workers
#       started by hand on one socket, wrk in alternating rounds;
#   (b) respawn latency after SIGKILL of a `sockets=` service (cfkd's
#       /bin/sh exec step) vs `tie_stdin_to=` vs no socket.
#
#   bench/sockets/run.sh
#   ROUNDS=3 KILLS=30 bench/sockets/run.sh
#
# Knobs: ROUNDS=5 (fresh pools, then a wrk run per pool and load mode) WRK_SECS=10 WRK_THREADS=2 WRK_CONNS=32
# KILLS=40 (per variant) MIN_AGE_MS=100 PHASES=throughput,respawn QUIET_PCT=10
# SAME= (cfkd or hand: an A/A run, two identical pools) INSTALL=1
# WAIT_QUIET=0 (seconds to wait for a 1-minute load average under 1) KEEP=0 (keep the scratch directory) OUT=file (the report, too)
# See bench/sockets/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${INSTALL:=1}" "${KEEP:=0}" "${WAIT_QUIET:=0}"

say() { printf '== %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v gcc >/dev/null || missing+=(gcc)
[[ -n "$(find /usr/lib -name libc.a -print -quit 2>/dev/null)" ]] || missing+=(libc6-dev)
command -v go >/dev/null || { echo "run.sh: Go is needed (the version in go.mod)" >&2; exit 1; }
if ((${#missing[@]})); then
	[[ $INSTALL == 1 ]] || { echo "run.sh: missing ${missing[*]} (INSTALL=0)" >&2; exit 1; }
	say "installing ${missing[*]}"
	apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- scratch directory and cleanup -------------------------------------------
WORK=$(mktemp -d /tmp/cfk-bench-sockets.XXXXXX)
driver_pid=""
cleanup() {
	local rc=$? d p exe
	trap - EXIT INT TERM
	if [[ -n $driver_pid ]] && kill -0 "$driver_pid" 2>/dev/null; then
		kill -TERM "$driver_pid" 2>/dev/null || true  # it stops cfkd and the launcher
		wait "$driver_pid" 2>/dev/null || true
	fi
	# Anything still running from our scratch directory (a worker whose
	# parent was killed, say), by pid.
	for d in /proc/[0-9]*; do
		p=${d#/proc/}
		exe=$(readlink "$d/exe" 2>/dev/null) || continue
		[[ $exe == "$WORK"/* ]] && kill -KILL "$p" 2>/dev/null || true
	done
	if [[ $KEEP == 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -------------------------------------------------------------------
cd "$repo"
say "building cfkd, the worker, the driver and the marker in $WORK/bin"
mkdir -p "$WORK/bin"
go build -o "$WORK/bin/cfkd" ./cmd/cfkd
go build -o "$WORK/bin/worker" ./examples/worker
go build -o "$WORK/bin/driver" ./bench/sockets/driver
# Static when possible: no dynamic loader before the marker reads the clock.
gcc -O2 -static -o "$WORK/bin/marker" bench/sockets/marker.c 2>/dev/null ||
	gcc -O2 -o "$WORK/bin/marker" bench/sockets/marker.c

if ((WAIT_QUIET > 0)); then
	say "waiting up to ${WAIT_QUIET}s for a 1-minute load average under 1"
	end=$((SECONDS + WAIT_QUIET))
	while ((SECONDS < end)) && ! awk '{exit !($1 < 1)}' /proc/loadavg; do sleep 5; done
fi

# --- machine -----------------------------------------------------------------
{
	echo "## bench/sockets — $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "- command: \`$(for v in ROUNDS WRK_SECS WRK_THREADS WRK_CONNS KILLS MIN_AGE_MS PHASES QUIET_PCT SAME; do [[ -n ${!v:-} ]] && printf '%s=%s ' "$v" "${!v}"; done)bench/sockets/run.sh\`"
	echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -a)"
	echo "- cfkd $(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- cmd supervisor listener console examples/worker || echo ' (work tree modified)'), $(go version | cut -d' ' -f3), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
	echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
} >"$WORK/report.md"

say "running the driver (about $(( (${ROUNDS:-5} * 4 * (${WRK_SECS:-10} + 1) + 40) / 60 + 1 )) minutes)"
"$WORK/bin/driver" -cfkd "$WORK/bin/cfkd" -worker "$WORK/bin/worker" -marker "$WORK/bin/marker" \
	-work "$WORK" >>"$WORK/report.md" &
driver_pid=$!
wait "$driver_pid"
driver_pid=""
echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/report.md"
cat "$WORK/report.md"
[[ -z ${OUT:-} ]] || cp "$WORK/report.md" "$OUT"
