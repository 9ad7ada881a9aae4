#!/usr/bin/env bash
# bench-mem-cfkd.sh: the proxy's memory saving as an operator sees it,
# through the real cfkd and `cfkctl mem`: a pool of WORKERS Perl workers
# forked by cfk-proxy.pl from one preloaded interpreter, against the same
# workers as independent services that each load the data themselves.
# (bench-mem.sh drives the proxy directly and measures more cases; this
# one checks the figure the daemon reports.)
#
#   proxies/perl/bench-mem-cfkd.sh                  # 16 workers, ~200 MB
#   WORKERS=4 RECORDS=100000 proxies/perl/bench-mem-cfkd.sh
#
# The data is RECORDS fixed 200-byte records packed in one string (the
# shape that stays shared; see cfk-proxy.pl --man). The pools run one
# after the other under one cfkd; each is measured once every worker has
# said it is ready, and again after SETTLE_SECS.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
workers=${WORKERS:-16}
records=${RECORDS:-1000000}
settle=${SETTLE_SECS:-5}

work=$(mktemp -d)
cfkd_pid=""
cleanup() {
	if [[ -n $cfkd_pid ]]; then
		"$work/cfkctl" --home "$work/home" shutdown >/dev/null 2>&1 || kill "$cfkd_pid" 2>/dev/null || true
		wait "$cfkd_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

(cd "$repo" && go build -o "$work/cfkd" ./cmd/cfkd && go build -o "$work/cfkctl" ./cmd/cfkctl)
ctl() { "$work/cfkctl" --home "$work/home" "$@"; }

cat >"$work/preload.pl" <<'EOF'
use strict;
use warnings;
our $PACKED = '';
my $n = $ENV{BENCH_RECORDS};
for my $i (0 .. $n - 1) {
	$PACKED .= pack('A200', "record $i " . ('x' x 180));
}
1;
EOF
cat >"$work/independent.pl" <<EOF
# An independent worker: loads the data itself, then is the same worker.
do "$work/preload.pl" or die "preload: \$@ \$!";
do "$work/worker.pl";
die \$@;
EOF
cat >"$work/worker.pl" <<'EOF'
# Says it is ready, then waits: an idle worker holding the data.
our $PACKED;
open(my $f, '>', "$ENV{BENCH_READY}/$ENV{CONTROL_FREAK_SERVICE}") or die $!;
print $f length($PACKED), "\n";
close $f;
sleep 3600 while 1;
EOF

mkdir -p "$work/home" "$work/ready"
chmod 700 "$work/home"
"$work/cfkd" --home "$work/home" &
cfkd_pid=$!
for _ in $(seq 100); do [[ -S $work/home/sock ]] && break; sleep 0.05; done

{
	echo "proxy app cmd=[\"perl\",\"$here/cfk-proxy.pl\",\"--preload\",\"$work/preload.pl\"]"
	echo "proxy app add_env=BENCH_RECORDS=$records"
	for i in $(seq -w 1 "$workers"); do
		echo "proxy app service p$i cmd=$work/worker.pl"
		echo "service p$i add_env=BENCH_READY=$work/ready"
		echo "service p$i tags=proxied"
		echo "service p$i startwait_secs=60"
		echo "service i$i cmd=[\"perl\",\"$work/independent.pl\"]"
		echo "service i$i add_env=BENCH_RECORDS=$records"
		echo "service i$i add_env=BENCH_READY=$work/ready"
		echo "service i$i tags=independent"
		echo "service i$i startwait_secs=60"
	done
} >"$work/pools.conf"
ctl load "$work/pools.conf"

# measure TAG PREFIX: start the pool, wait until every worker is ready,
# print the PSS total from cfkctl mem (KiB) twice, stop the pool.
measure() {
	local tag=$1 prefix=$2 t0 n
	rm -f "$work/ready"/*
	t0=$(date +%s.%N)
	ctl start "@$tag" >/dev/null
	for _ in $(seq 1200); do
		n=$(find "$work/ready" -name "$prefix*" | wc -l)
		((n == workers)) && break
		sleep 0.1
	done
	((n == workers)) || { echo "only $n of $workers $tag workers got ready" >&2; exit 1; }
	local ready
	ready=$(echo "$(date +%s.%N) - $t0" | bc)
	local pss1 pss2
	pss1=$(ctl mem "@$tag" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["pss_kib"])')
	sleep "$settle"
	pss2=$(ctl mem "@$tag" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["pss_kib"])')
	ctl mem "@$tag" >"$work/mem-$tag.txt"
	ctl stop "@$tag" >/dev/null
	echo "$tag $ready $pss1 $pss2"
}

p=$(measure proxied p)
# The proxy stops once none of its services is up.
for _ in $(seq 100); do ctl proxystatus | grep -q '^down' && break; sleep 0.1; done
i=$(measure independent i)

read -r _ pready ppss1 ppss2 <<<"$p"
read -r _ iready ipss1 ipss2 <<<"$i"
data_mb=$((records * 200 / 1000000))
echo "## Perl proxy memory through cfkd ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "$workers workers, $data_mb MB of packed records each, PSS totals from \`cfkctl mem --json\` (proxy included for the proxied pool); $(nproc) CPUs, $(perl -e 'print $^V')."
echo
echo "| pool | all ready after | PSS total, ready | PSS total, +${settle} s |"
echo "|---|---:|---:|---:|"
printf '| proxied (one preload, forked workers) | %.1f s | %d MiB | %d MiB |\n' "$pready" $((ppss1 / 1024)) $((ppss2 / 1024))
printf '| independent (each loads its own) | %.1f s | %d MiB | %d MiB |\n' "$iready" $((ipss1 / 1024)) $((ipss2 / 1024))
echo
echo "Independent / proxied: $(echo "scale=2; $ipss2 / $ppss2" | bc)x."
echo
echo '`cfkctl mem @proxied` at the end:'
echo
echo '```'
cat "$work/mem-proxied.txt"
echo '```'
