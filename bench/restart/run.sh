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
# STARTER_INTERVAL=1 CASES=cfkd1,cfkd2,cfkdgunicorn,supervisord,supervisord1by1,starman,gunicorn
# BIG_CASES=cfkd1,cfkd2,supervisord1by1,starman,gunicorn
# PHASES=restart,big,upgrade INSTALL=1 WAIT_QUIET=0 (seconds to wait for a
# 1-minute load average under 1) KEEP=0 (keep the scratch directory)
# OUT=file (the report, too). See bench/restart/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
: "${INSTALL:=1}" "${KEEP:=0}" "${WAIT_QUIET:=0}"

say() { printf '== %s\n' "$*" >&2; }

# --- peers -------------------------------------------------------------------
# Debian packages: supervisor (supervisord, supervisorctl), libserver-starter-perl
# (start_server), starman, gunicorn, wrk.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v supervisord >/dev/null || missing+=(supervisor)
command -v start_server >/dev/null || missing+=(libserver-starter-perl)
command -v starman >/dev/null || missing+=(starman)
[[ -x /usr/bin/gunicorn ]] || missing+=(gunicorn)
command -v go >/dev/null || { echo "run.sh: Go is needed (the version in go.mod)" >&2; exit 1; }
if ((${#missing[@]})); then
	[[ $INSTALL == 1 ]] || { echo "run.sh: missing ${missing[*]} (INSTALL=0)" >&2; exit 1; }
	say "installing ${missing[*]}"
	apt-get update -q >/dev/null
	# On a systemd host the supervisor package starts its own system-wide
	# supervisord on /etc/supervisor; it does not touch our scratch directory.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- scratch directory and cleanup -------------------------------------------
WORK=$(mktemp -d /tmp/cfk-bench-restart.XXXXXX)
driver_pid=""
# ours: a process whose executable lies under $WORK (cfkd, the workers) or
# whose command line names it (supervisord, start_server, starman, gunicorn).
ours() {
	local exe
	exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
	[[ $exe == "$WORK"/* ]] && return 0
	tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$WORK/"
}
cleanup() {
	local rc=$? d p
	trap - EXIT INT TERM
	if [[ -n $driver_pid ]] && kill -0 "$driver_pid" 2>/dev/null; then
		kill -TERM "$driver_pid" 2>/dev/null || true  # it stops every peer it started
		wait "$driver_pid" 2>/dev/null || true
	fi
	for d in /proc/[0-9]*; do
		p=${d#/proc/}
		[[ $p == "$$" || $p == "$BASHPID" ]] && continue
		if ours "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
	done
	if [[ $KEEP == 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -------------------------------------------------------------------
cd "$repo"
say "building cfkd, cfkctl, the worker and the driver in $WORK/bin"
mkdir -p "$WORK/bin"
go build -o "$WORK/bin/cfkd" ./cmd/cfkd
go build -o "$WORK/bin/cfkctl" ./cmd/cfkctl
go build -o "$WORK/bin/worker" ./examples/worker
go build -o "$WORK/bin/driver" ./bench/restart/driver

# Does the example worker say READY=1? Then cfkd's services use
# ready=notify and a rolling restart moves on as soon as each new worker
# serves; otherwise startwait_secs=0.2.
ready=()
readiness="startwait_secs=0.2 (the worker sends no READY=1)"
if grep -q 'SdNotifyReady\|READY=1' examples/worker/main.go; then
	ready=(-ready-notify)
	readiness="ready=notify (the worker sends READY=1 once it serves)"
fi

if ((WAIT_QUIET > 0)); then
	say "waiting up to ${WAIT_QUIET}s for a 1-minute load average under 1"
	end=$((SECONDS + WAIT_QUIET))
	while ((SECONDS < end)) && ! awk '{exit !($1 < 1)}' /proc/loadavg; do sleep 5; done
fi

# --- machine -----------------------------------------------------------------
{
	echo "## bench/restart — $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "- command: \`$(for v in REPS WRK_SECS WRK_THREADS WRK_CONNS RESTART_AT_MS WORKERS BIG_WORKERS BIG_REPS BIG_WRK_SECS UPGRADES STARTER_INTERVAL CASES BIG_CASES PHASES; do [[ -n ${!v:-} ]] && printf '%s=%s ' "$v" "${!v}"; done)bench/restart/run.sh\`"
	echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -a)"
	echo "- cfkd $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- cmd supervisor listener console examples || echo ' (work tree modified)'), $(go version | cut -d' ' -f3); cfkd services: $readiness"
	echo "- peers: supervisor $(dpkg-query -W -f '${Version}' supervisor), libserver-starter-perl $(dpkg-query -W -f '${Version}' libserver-starter-perl), starman $(dpkg-query -W -f '${Version}' starman), gunicorn $(dpkg-query -W -f '${Version}' gunicorn), wrk $(dpkg-query -W -f '${Version}' wrk); $(/usr/bin/python3 --version), perl $(perl -e 'print substr($^V, 1)')"
	echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
} >"$WORK/report.md"

say "running the driver (about 5 minutes)"
"$WORK/bin/driver" -cfkd "$WORK/bin/cfkd" -cfkctl "$WORK/bin/cfkctl" -worker "$WORK/bin/worker" \
	"${ready[@]}" -work "$WORK" >>"$WORK/report.md" &
driver_pid=$!
wait "$driver_pid"
driver_pid=""
echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/report.md"
cat "$WORK/report.md"
[[ -z ${OUT:-} ]] || cp "$WORK/report.md" "$OUT"
