#!/usr/bin/env bash
# bench-mem.sh: memory of a pool of Go workers that share a read-only
# table through the Go proxy (cfkproxy), versus independent processes that
# each build the table in their own heap. See BENCH.md for results.
#
#   proxies/go/bench-mem.sh                          # 16 workers, 200 MiB
#   proxies/go/bench-mem.sh -workers 4 -mb 64 -modes single,proxy
#   CGO_ENABLED=0 proxies/go/bench-mem.sh            # a static example binary
#
# The arguments go to benchmem (go run ./benchmem -h); it builds the
# example with the go in PATH and prints markdown tables.
set -euo pipefail
cd "$(dirname "$0")"

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(uname -sr) $(nproc) CPUs" \
	"$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)" \
	"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" \
	"$(go version | cut -d' ' -f3) CGO_ENABLED=$(go env CGO_ENABLED)"
echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg); shmem_enabled: $(cat /sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null || echo n/a)"
echo "# benchmem $*"
go run ./benchmem "$@"
