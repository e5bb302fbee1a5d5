#!/usr/bin/env bash
# Manual wire-compatibility check of busline against a live tomodachi
# service on one RabbitMQ broker. Not part of `make test`: CI cannot install
# tomodachi (PyPI is not reachable from it); the tomodachi module's tests
# check the wire form read from tomodachi's source instead.
#
#   TOMODACHI_DIR=/path/to/tomodachi-checkout scripts/tomodachi-interop.sh
#
# TOMODACHI_DIR is a checkout of https://github.com/kalaspuff/tomodachi (the
# directory that holds the tomodachi package). Its dependencies for AMQP come
# from Debian: apt-get install python3-aioamqp python3-aiohttp
# python3-structlog python3-tzlocal python3-colorama python3-yarl python3-tz
# python3-protobuf protobuf-compiler (protoc generates orders_pb2.py from
# protocodec/orderspb/orders.proto). PYTHON picks the interpreter (default
# /usr/bin/python3, the one Debian's packages serve). Without
# BUSLINE_AMQP_URL the script starts a private node with scripts/rabbitmq.sh
# and stops it afterwards.
#
# It runs tomodachi/interop (Go, busline), which starts
# tomodachi/interop/svc.py (a tomodachi service written against tomodachi's
# public API) once its endpoints are bound, and checks: an event tomodachi
# publishes on start (JsonBase) read by busline as a tomodachi.Envelope; an
# event busline publishes with the JSON envelope handled by tomodachi and
# its reply handled by busline; the same with the protobuf envelope
# (ProtobufBase, proto_class) between a busline PerInstance endpoint and a
# non-competing tomodachi handler; and the names of tomodachi's competing and
# non-competing queues against tomodachi.QueueName. Routing keys and queue
# names carry a prefix of their own per run (tomodachi's routing_key_prefix
# and queue_name_prefix); the queues are deleted at the end.
#
# Last run (2026-12-03) on Debian 12 with RabbitMQ 3.10.8, Python 3.11.2,
# Debian's python3-aioamqp 0.15.0 and python3-protobuf 3.21.12, against
# tomodachi 0.28.5.dev0 (commit ac47187): 10 checks passed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
: "${TOMODACHI_DIR:?set TOMODACHI_DIR to a tomodachi checkout (the directory holding the tomodachi package)}"
[ -d "$TOMODACHI_DIR/tomodachi" ] || { echo "tomodachi-interop: no tomodachi package in $TOMODACHI_DIR" >&2; exit 2; }
python=${PYTHON:-/usr/bin/python3}
PYTHONPATH="$TOMODACHI_DIR" "$python" -c 'import tomodachi, aioamqp, google.protobuf' ||
	{ echo "tomodachi-interop: $python cannot import tomodachi, aioamqp and google.protobuf (see the packages above)" >&2; exit 2; }
command -v protoc >/dev/null || { echo "tomodachi-interop: no protoc (apt-get install protobuf-compiler)" >&2; exit 2; }

if [ -z "${BUSLINE_AMQP_URL:-}" ]; then
	exec "$root/scripts/rabbitmq.sh" run -- "$0" "$@"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
protoc --python_out="$work" -I "$root/protocodec/orderspb" "$root/protocodec/orderspb/orders.proto"
(cd "$root/tomodachi" && go build -o "$work/interop" ./interop)
cd "$root/tomodachi/interop"
PYTHONPATH="$TOMODACHI_DIR" ORDERS_PB_DIR="$work" \
	"$work/interop" -amqp "$BUSLINE_AMQP_URL" -python "$python" -svc svc.py
