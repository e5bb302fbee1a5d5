#!/usr/bin/env bash
# Manual wire-compatibility check of busline against a live Python PikaBus
# service (2.x by default, 1.x with PIKABUS_LINE=1) on one RabbitMQ broker.
# Not part of `make test`: CI cannot fetch PikaBus; conformance's PikaBus
# scenarios, which every transport runs, imitate both lines in Go.
#
#   PIKABUS_DIR=/path/to/PikaBus-checkout BUSLINE_AMQP_URL=amqp://guest:guest@localhost:5672/ \
#       scripts/pikabus-interop.sh
#
# PIKABUS_DIR is a checkout of https://github.com/hansehe/PikaBus (2.x): the
# directory that holds the PikaBus package. Python 3.11+ needs aio-pika and
# yarl (PikaBus's dependencies; on Debian: apt-get install python3-aio-pika).
# Without BUSLINE_AMQP_URL the script starts a private node with
# scripts/rabbitmq.sh and stops it afterwards. Use a broker (or vhost) with no
# other PikaBus traffic: the check uses the queues py.interop, go.default,
# go.interop (deleted at the end), interop.tap (exclusive) and the shared
# error queue (the check replays the messages it fails there).
#
# It starts scripts/pikabus-interop/pysvc.py (a PikaBus service written
# against PikaBus's public API) and runs scripts/pikabus-interop (Go, busline)
# against it: commands, replies and requests, events, deferral, retries, the
# error queue and its replay, both ways. It prints PASS/FAIL per check and the
# messages as they crossed the broker; it exits 1 if a check failed.
# PYTHON picks the interpreter (default python3); GOFLAGS passes through.
#
# PIKABUS_LINE=1 runs scripts/pikabus-interop/pysvc1.py instead, a PikaBus
# 1.x service (pika, synchronous) with the same actions and log, against a
# PIKABUS_DIR that is a checkout of PikaBus's last 1.x commit (9153c00,
# 2022-09-09), with Python's pika installed (python3-pika); the Go side then
# names the Python queue in Options.TimeFormatByQueue and publishes its
# events in the 1.x time form, as the README's table says. pysvc1.py was
# written against that commit's API and has not been run yet: the machine
# it was written on had no pika.
#
# Last run (2026-11-22) on Debian with RabbitMQ 3.10.8, Python 3.11.2 and
# Debian's python3-aio-pika 8.2.5 (PikaBus 2.0.0 asks for aio-pika 10; the
# calls it makes work on 8.2.5), against PikaBus 2.0.0 (commit 0ecf8d7):
#   PYTHON=/usr/bin/python3 PIKABUS_DIR=/tmp/pikabus \
#   BUSLINE_AMQP_URL=amqp://guest:guest@127.0.0.1:5820/ scripts/pikabus-interop.sh
# 29 checks passed. Before the fixes it found, a Request to PikaBus timed out
# (its Reply could not bind busline's exclusive reply queue) and PikaBus
# could not declare a quorum "error" queue busline had created.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
: "${PIKABUS_DIR:?set PIKABUS_DIR to a PikaBus checkout (the directory holding the PikaBus package)}"
[ -d "$PIKABUS_DIR/PikaBus" ] || { echo "pikabus-interop: no PikaBus package in $PIKABUS_DIR" >&2; exit 2; }
python=${PYTHON:-python3}
line=${PIKABUS_LINE:-2}
case $line in
1) pysvc=pysvc1.py; "$python" -c 'import pika' || { echo "pikabus-interop: $python lacks pika" >&2; exit 2; } ;;
2) pysvc=pysvc.py; "$python" -c 'import aio_pika, yarl' || { echo "pikabus-interop: $python lacks aio-pika/yarl" >&2; exit 2; } ;;
*) echo "pikabus-interop: PIKABUS_LINE must be 1 or 2" >&2; exit 2 ;;
esac

if [ -z "${BUSLINE_AMQP_URL:-}" ]; then
	exec "$root/scripts/rabbitmq.sh" run -- "$0" "$@"
fi

work=$(mktemp -d)
pylog="$work/py.jsonl"
cleanup() {
	if [ -n "${pypid:-}" ]; then kill "$pypid" 2>/dev/null || true; wait "$pypid" 2>/dev/null || true; fi
	# The endpoint queues go; what the check left on the error queue stays.
	[ -x "$work/interop" ] && "$work/interop" -amqp "$BUSLINE_AMQP_URL" -cleanup || true
	echo "pikabus-interop: Python service log in $work" >&2
}
trap cleanup EXIT

(cd "$root" && go build -o "$work/interop" ./scripts/pikabus-interop)

PIKABUS_DIR=$PIKABUS_DIR AMQP_URL=$BUSLINE_AMQP_URL PY_LOG=$pylog \
	"$python" "$here/pikabus-interop/$pysvc" >"$work/pysvc.out" 2>"$work/pysvc.err" &
pypid=$!
for _ in $(seq 100); do
	grep -q consuming "$work/pysvc.out" 2>/dev/null && break
	kill -0 "$pypid" 2>/dev/null || { cat "$work/pysvc.err" >&2; exit 2; }
	sleep 0.1
done

status=0
"$work/interop" -amqp "$BUSLINE_AMQP_URL" -pylog "$pylog" -line "$line" "$@" || status=$?
if [ $status != 0 ]; then
	# PikaBus logs the tracebacks of the handler failures the check provokes too.
	echo "== the last lines of the Python service's stderr (PikaBus's log)"; tail -40 "$work/pysvc.err"
fi
exit $status
