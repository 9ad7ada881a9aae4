# bench/lib.sh: the shell that bench/run.sh, bench/sockets/run.sh and
# bench/restart/run.sh share. Sourced (after `set -euo pipefail`), never
# run. It sets repo, defaults INSTALL=1 KEEP=0 WAIT_QUIET=0, and defines:
#   say, die                 progress and fatal messages on stderr
#   need, need_static_libc,  note what to install; then install_missing
#   need_go, install_missing   apt-gets it (sudo when not root), or dies
#   use_scratch DIR          $WORK = DIR, and the cleanup trap (below)
#   wait_quiet LIMIT         with WAIT_QUIET=N: wait up to N s for a load < LIMIT
#   build_marker SRC OUT     gcc, static when the static libc is there
#   run_driver REPORT ARGV   run the driver, its stdout appended to REPORT
#   report_head TITLE SCRIPT VAR...  the report's first lines
# shellcheck shell=bash

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${INSTALL:=1}" "${KEEP:=0}" "${WAIT_QUIET:=0}"

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------
missing=()

# need CMD PACKAGE: PACKAGE is to be installed unless CMD is on the PATH.
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }

# need_static_libc: a static marker needs libc.a (Debian: libc6-dev).
need_static_libc() {
	[[ -e /usr/lib/x86_64-linux-gnu/libc.a || -e /usr/lib/libc.a ||
		-n "$(find /usr/lib -name libc.a -print -quit 2>/dev/null)" ]] || missing+=(libc6-dev)
}

need_go() { command -v go >/dev/null 2>&1 || die "Go is needed (the version in go.mod)"; }

# install_missing apt-gets what need found missing, as root or through
# sudo; with INSTALL=0 it stops instead. apt's chatter goes to stderr:
# stdout is the report's.
install_missing() {
	((${#missing[@]})) || return 0
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	[[ $INSTALL == 1 ]] || die "missing: ${missing[*]} (INSTALL=0)"
	local sudo=()
	if ((EUID != 0)); then
		command -v sudo >/dev/null || die "missing ${missing[*]}; run as root or install them"
		sudo=(sudo)
	fi
	say "installing ${missing[*]}"
	# On a systemd host the supervisor and runit packages start their own
	# system-wide daemon; it does not touch our scratch directories.
	"${sudo[@]}" apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# --- scratch directory and cleanup -------------------------------------------
driver_pid=""

# use_scratch DIR makes DIR the run's scratch directory, $WORK (symlinks
# resolved, as /proc/PID/exe shows them), and sets the trap: on any exit
# the driver gets TERM (it stops everything it started), then whatever
# of ours is left gets KILL, and WORK goes unless KEEP=1.
use_scratch() {
	WORK=$1
	mkdir -p "$WORK"
	WORK=$(cd "$WORK" && pwd -P)
	trap cleanup EXIT
	trap 'exit 130' INT TERM
}

# ours tells whether a process belongs to this run: its executable, its
# working directory or its command line lies under $WORK. That covers
# what was built into $WORK/bin (cfkd, workers, markers), the peers that
# run in a directory of $WORK (runsv, s6-supervise) and those that name
# it in argv (supervisord, start_server, starman, gunicorn, runsvdir).
ours() {
	local p=$1 exe cwd
	exe=$(readlink "/proc/$p/exe" 2>/dev/null) || return 1
	cwd=$(readlink "/proc/$p/cwd" 2>/dev/null) || true
	[[ $exe == "$WORK"/* || $cwd == "$WORK"/* || $cwd == "$WORK" ]] && return 0
	tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$WORK/"
}

cleanup() {
	local rc=$? d p killed=1
	trap - EXIT INT TERM
	if [[ -n $driver_pid ]] && kill -0 "$driver_pid" 2>/dev/null; then
		kill -TERM "$driver_pid" 2>/dev/null || true
		wait "$driver_pid" 2>/dev/null || true
	fi
	# Whatever is left (the driver itself killed, a worker whose parent
	# was killed first): by pid, checked, until nothing is.
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

# --- run -----------------------------------------------------------------------

# wait_quiet LIMIT: with WAIT_QUIET=N, wait up to N seconds for the
# 1-minute load average to fall under LIMIT.
wait_quiet() {
	((WAIT_QUIET > 0)) || return 0
	say "waiting up to ${WAIT_QUIET}s for a 1-minute load average under $1"
	local end=$((SECONDS + WAIT_QUIET))
	while ((SECONDS < end)) && ! awk -v limit="$1" '{exit !($1 < limit)}' /proc/loadavg; do sleep 5; done
}

# build_marker SRC OUT: static when the static libc is there, so that no
# dynamic loader runs before the marker reads the clock.
build_marker() {
	if ! gcc -O2 -static -o "$2" "$1" 2>"$WORK/gcc.err"; then
		say "static link failed ($(head -1 "$WORK/gcc.err")); building it dynamic"
		gcc -O2 -o "$2" "$1"
	fi
}

# run_driver REPORT ARGV...: run the driver in the background, so that
# the trap can TERM it, with its stdout appended to REPORT.
run_driver() {
	local report=$1
	shift
	"$@" >>"$report" &
	driver_pid=$!
	wait "$driver_pid"
	driver_pid=""
}

# report_head TITLE SCRIPT VAR...: the report's title, then the command
# (the VARs that are set, then SCRIPT) and the machine.
report_head() {
	local title=$1 script=$2 v cmd=""
	shift 2
	for v; do
		[[ -n ${!v:-} ]] && cmd+="$v=${!v} "
	done
	echo "## $title — $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "- command: \`$cmd$script\`"
	echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -a)"
}

# loadavg: the three load averages.
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
