#!/usr/bin/env bash
# The bus on the memory broker against Watermill's router (issue 12's
# target): the bus package's BenchmarkBus and the nested module bench's
# BenchmarkBusCodec (encoding/json and go-json) and BenchmarkRouter, built
# once and run ROUNDS times interleaved (default 9); then the medians of
# wall and CPU time per message, their spread, and the router/bus ratios.
# Single runs spread by ±20% on a 2-core machine even when it is quiet:
# compare medians of one invocation.
#
#   scripts/bench-router.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-9}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go test -c -o "$dir/bus.test" ./bus
(cd bench && go test -c -o "$dir/bench.test" .)
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
	"$dir/bench.test" -test.run '^$' -test.bench '^BenchmarkBusCodec$/^(encoding|goccy)$/^(json|go-json)$|^BenchmarkRouter$' \
		-test.benchtime 40000x -test.benchmem | awk '/^Benchmark/ {print $1, $3, $7, $9, $11}'
	"$dir/bus.test" -test.run '^$' -test.bench '^BenchmarkBus$/concurrency=1' -test.benchtime 40000x -test.benchmem 2>&1 |
		awk '/ns\/op/ {print "BenchmarkBus/concurrency=1", $2, $6, $8, $10}'
done >"$dir/runs"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$dir/runs" <<'PY'
import collections, statistics, sys
wall, cpu, mem = collections.defaultdict(list), collections.defaultdict(list), {}
for line in open(sys.argv[1]):
    name, w, c, b, a = line.split()
    name = name.removesuffix("-2")
    wall[name].append(float(w)); cpu[name].append(float(c)); mem[name] = (b, a)
for n in sorted(wall):
    print(f"{n:45} wall {statistics.median(wall[n]):8,.0f} ns ({min(wall[n]):,.0f}-{max(wall[n]):,.0f})"
          f"  CPU {statistics.median(cpu[n]):8,.0f} ns  {mem[n][0]} B {mem[n][1]} allocs  x{len(wall[n])}")
rw, rc = statistics.median(wall["BenchmarkRouter"]), statistics.median(cpu["BenchmarkRouter"])
for n in sorted(wall):
    if n != "BenchmarkRouter":
        print(f"router/bus {n:45} wall {rw / statistics.median(wall[n]):.2f}  CPU {rc / statistics.median(cpu[n]):.2f}")
PY
