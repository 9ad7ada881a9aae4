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

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

: "${SUPERVISORS:=cfkd,supervisord,runit,s6}"
: "${INSTALL:=1}"
: "${WAIT_QUIET:=0}"
: "${KEEP:=0}"
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

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

wants() { [[ ",$SUPERVISORS," == *",$1,"* ]]; }

# --- peers -----------------------------------------------------------------
# Debian package names (apt-cache policy): supervisor (supervisord,
# supervisorctl), runit (runsvdir, runsv, sv), s6 (s6-svscan, s6-supervise,
# s6-svc, s6-svstat; pulls execline and skalibs). gcc and libc6-dev build
# the marker (libc6-dev has the static libc).
packages=()
need() { command -v "$1" >/dev/null 2>&1 || packages+=("$2"); }
wants supervisord && { need supervisord supervisor; need supervisorctl supervisor; }
wants runit && { need runsvdir runit; need runsv runit; need sv runit; }
wants s6 && { need s6-svscan s6; need s6-supervise s6; need s6-svc s6; need s6-svstat s6; }
need gcc gcc
[[ -e /usr/lib/x86_64-linux-gnu/libc.a || -e /usr/lib/libc.a || -n "$(find /usr/lib -name libc.a -print -quit 2>/dev/null)" ]] || packages+=(libc6-dev)
if ((${#packages[@]})); then
	mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
	[[ $INSTALL == 1 ]] || die "missing: ${packages[*]} (INSTALL=0)"
	sudo=()
	if ((EUID != 0)); then
		command -v sudo >/dev/null || die "missing ${packages[*]}; run as root or install them"
		sudo=(sudo)
	fi
	say "installing ${packages[*]}"
	# On a systemd host the supervisor and runit packages start their
	# own system-wide daemon; it does not touch our scratch directories.
	"${sudo[@]}" apt-get update -q
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"
fi

# --- scratch directory and cleanup -----------------------------------------
WORK=${WORK:-$(mktemp -d /tmp/cfk-bench.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd -P)
BIN=$WORK/bin
mkdir -p "$BIN"
OUT=${OUT:-$WORK/report.md}
driver_pid=""

# ours tells whether a process belongs to this run: its executable, its
# working directory or its command line lies under $WORK. That covers the
# markers and cfkd (binaries in $BIN), runsv and s6-supervise (cwd is their
# service dir), runsvdir, s6-svscan and supervisord (paths in argv).
ours() {
	local p=$1 exe cwd
	exe=$(readlink "/proc/$p/exe" 2>/dev/null) || return 1
	cwd=$(readlink "/proc/$p/cwd" 2>/dev/null) || true
	[[ $exe == "$WORK"/* || $cwd == "$WORK"/* || $cwd == "$WORK" ]] && return 0
	tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$WORK/"
}

cleanup() {
	local rc=$? p killed=1
	trap - EXIT INT TERM
	if [[ -n $driver_pid ]] && kill -0 "$driver_pid" 2>/dev/null; then
		# The driver kills everything it started when it gets TERM.
		kill -TERM "$driver_pid" 2>/dev/null || true
		wait "$driver_pid" 2>/dev/null || true
	fi
	# Whatever is left (the driver itself killed, say): by pid, checked.
	while ((killed)); do
		killed=0
		for d in /proc/[0-9]*; do
			p=${d#/proc/}
			[[ $p == "$$" || $p == "$BASHPID" ]] && continue
			if ours "$p"; then
				kill -KILL "$p" 2>/dev/null && killed=1
			fi
		done
		((killed)) && sleep 0.2
	done
	if [[ $KEEP == 1 ]]; then
		say "scratch directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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
# Static: no dynamic loader to run, so the marker reads the clock sooner.
if ! gcc -O2 -static -o "$BIN/marker" bench/marker/marker.c 2>"$WORK/gcc.err"; then
	say "static link failed ($(head -1 "$WORK/gcc.err")); building it dynamic"
	gcc -O2 -o "$BIN/marker" bench/marker/marker.c
fi

# --- run -------------------------------------------------------------------
# 1000 services under supervisord need about 3000 descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if ((WAIT_QUIET > 0)); then
	say "waiting up to ${WAIT_QUIET}s for the machine to be quiet"
	end=$((SECONDS + WAIT_QUIET))
	while ((SECONDS < end)) && ! awk '{exit !($1 < 0.5)}' /proc/loadavg; do sleep 5; done
fi
awk '{exit !($1 >= 1)}' /proc/loadavg && say "warning: load average $(cut -d' ' -f1 /proc/loadavg): something else is running; figures will be noisy"

args=(-marker "$BIN/marker" -work "$WORK")
wants cfkd && args+=(-cfkd "$BIN/cfkd" -cfkctl "$BIN/cfkctl")
say "measuring $SUPERVISORS (about 1 minute each)"
# The driver, the supervisors and their services all inherit the niceness.
nice -n "$NICE" "$BIN/driver" "${args[@]}" >"$OUT" &
driver_pid=$!
wait "$driver_pid"
driver_pid=""
cat "$OUT"
[[ $KEEP == 1 || $OUT != "$WORK"/* ]] || say "(report not kept; set OUT=file or KEEP=1)"
