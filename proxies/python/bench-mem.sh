#!/usr/bin/env bash
# bench-mem.sh: memory of a pool of Python workers that share ~200 MB of
# application state, forked by cfk_proxy.py, versus independent python3
# processes and gunicorn --preload. See BENCH.md for results.
#
#   proxies/python/bench-mem.sh            # 16 workers, 200 MB, both data kinds
#   WORKERS=8 MB=100 DATA=blob MODES="single proxy" proxies/python/bench-mem.sh
#
# PYTHON (default Debian's /usr/bin/python3, which has python3-gunicorn)
# runs everything. Each run prints one JSON line (bench/drive.py); the
# table at the end sums PSS over the whole pool, parent included, from
# /proc/PID/smaps_rollup, and compares it with one worker alone (single).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-/usr/bin/python3}
WORKERS=${WORKERS:-16}
MB=${MB:-200}
DATA=${DATA:-"objects blob"}
MODES=${MODES:-"single proxy proxy-nofreeze gunicorn independent"}

if ! "$PYTHON" -c 'import gunicorn' 2>/dev/null; then
	echo "# $PYTHON has no gunicorn (apt-get install python3-gunicorn): skipping that mode" >&2
	MODES=${MODES//gunicorn/}
fi

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(uname -sr) $(nproc) CPUs" \
	"$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)" \
	"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" \
	"$("$PYTHON" --version)"
echo "# WORKERS=$WORKERS MB=$MB DATA='$DATA' MODES='$MODES'"

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for data in $DATA; do
	for mode in $MODES; do
		"$PYTHON" bench/drive.py --mode "$mode" --data "$data" --workers "$WORKERS" --mb "$MB" --python "$PYTHON" |
			tee -a "$results"
	done
done

"$PYTHON" - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
single = {r["data"]: r for r in rows if r["mode"] == "single"}
print()
print("| data | pool | start s | idle PSS MiB | after gc.collect | after one read pass | load |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    ref = single.get(r["data"])
    def cell(step):
        v = r[step]["pss"]
        if ref is None or r["mode"] == "single":
            return "%.0f" % v
        return "%.0f (%.2fx)" % (v, v / ref["idle"]["pss"])
    start = "%.2f" % r["start_s"]
    if "forks_s" in r:
        start += " (preload %.2f + forks %.2f)" % (r["preload_s"], r["forks_s"])
    pool = r["mode"] if r["mode"] == "single" else "%s x%d" % (r["mode"], r["workers"])
    print("| %s | %s | %s | %s | %s | %s | %s |" % (r["data"], pool, start, cell("idle"), cell("after_gc"),
                                                   cell("after_read"), r["load1"]))
print()
print("(x) = pool PSS / PSS of one worker alone, idle. load = 1-minute load average")
print("when the run began: start times are only meaningful on an idle machine.")
PY
