#!/usr/bin/env bash
# The RabbitMQ comparisons of issue 18 in one run, against the broker in
# BUSLINE_AMQP_URL (`make bench-rabbitmq` starts a private node): the root
# module's amqp benchmarks (bus, rawbus, transport and raw amqp091-go;
# Send, Defer, Consume, deferral lateness) and the nested module bench's
# (the bus against watermill-amqp v3), ROUNDS times interleaved, every run
# recorded in one file; then the medians as the README's markdown tables,
# the client's and the broker's CPU time per message, and the ratios of the
# issue's targets, with the load averages seen.
#
#   ROUNDS          rounds of the throughput benchmarks (default 5)
#   MSGS            messages per throughput benchmark run (default 20000)
#   SERIAL_MSGS     messages per one-sender run (default 2000)
#   DEFER_N         messages due together in the lateness benchmark (default 5000)
#   LATENESS_ROUNDS rounds of the lateness benchmark (default 1)
#   RECORD          keep the record file there, for benchtable to print again
#
# About 13 minutes on a quiet 2-core machine with the defaults (13 on
# 2026-12-03 at 9c980b2, most of it the rounds).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BUSLINE_AMQP_URL:?no broker: run this through make bench-rabbitmq}"
rounds=${ROUNDS:-5}
msgs=${MSGS:-20000}
serial=${SERIAL_MSGS:-2000}
defer_n=${DEFER_N:-5000}
lateness_rounds=${LATENESS_ROUNDS:-1}

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export BUSLINE_BENCH_RECORD="$dir/record.jsonl"
go test -c -o "$dir/amqp.test" ./amqp
(cd bench && go test -c -o "$dir/bench.test" .)

echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
bench() { # BINARY PATTERN BENCHTIME
	"$dir/$1" -test.run '^$' -test.bench "$2" -test.benchtime "$3" -test.benchmem=false | grep -E '^(Benchmark|ratio|ratios|FAIL|panic|ok)|--- FAIL|_test\.go:[0-9]+:' || true
}
for r in $(seq "$rounds"); do
	echo "== round $r of $rounds (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	bench amqp.test 'BenchmarkSendSerial/' "${serial}x"
	bench bench.test 'BenchmarkSendSerial/' "${serial}x"
	bench amqp.test 'BenchmarkSend64/|BenchmarkDefer64/' "${msgs}x"
	bench bench.test 'BenchmarkSend64/' "${msgs}x"
	bench amqp.test 'BenchmarkConsume/' "${msgs}x"
	bench bench.test 'BenchmarkConsume/' "${msgs}x"
done
for r in $(seq "$lateness_rounds"); do
	echo "== deferral lateness, N=$defer_n, round $r of $lateness_rounds (load average $(cut -d' ' -f1-3 /proc/loadavg))"
	BUSLINE_BENCH_DEFER_N=$defer_n bench amqp.test 'BenchmarkDeferLateness/(transport|raw-dlx|raw-levels|raw-levels-topic)$' 1x
done
echo
echo "== the README's RabbitMQ tables (medians of the rounds above)"
echo
go run ./internal/benchkit/benchtable "$BUSLINE_BENCH_RECORD"
if [ -n "${RECORD:-}" ]; then cp "$BUSLINE_BENCH_RECORD" "$RECORD"; fi
