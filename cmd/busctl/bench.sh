#!/usr/bin/env bash
# Times busctl with 100,000 failed messages (the figures in the README's
# "Operating" section): fills the error queue of the RabbitMQ node at
# $BUSLINE_AMQP_URL (queues error, billing, shipping, orders), then times
# taking them into a fresh store and listing them, listing again, grouping,
# and retrying the group of 10,000. N=... changes the count.
#
#   scripts/rabbitmq.sh run -- cmd/busctl/bench.sh
set -euo pipefail
: "${BUSLINE_AMQP_URL:?set BUSLINE_AMQP_URL (or run under scripts/rabbitmq.sh run --)}"
cd "$(dirname "$0")"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go build -o "$dir/busctl" . && go build -o "$dir/seed" ./internal/seed
export BUSCTL_STORE="$dir/store.db"
t() { local start=$EPOCHREALTIME; "$@"; awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "  %.1f s\n", b - a }' >&2; }
"$dir/seed" -amqp "$BUSLINE_AMQP_URL" -n "${N:-100000}"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "busctl failed list --limit 0   (takes the failures into the store, lists them)" >&2
t "$dir/busctl" --no-progress failed list --limit 0 >"$dir/list1.txt"
echo "  $(($(wc -l <"$dir/list1.txt") - 1)) messages listed" >&2
echo "busctl failed list --limit 0   (from the store)" >&2
t "$dir/busctl" failed list --limit 0 >/dev/null
echo "busctl failed groups" >&2
t "$dir/busctl" failed groups
group=$("$dir/busctl" failed groups -o json | python3 -c 'import json,sys; print(next(g["id"] for g in json.load(sys.stdin) if g["kind"].startswith("charge order #: card")))')
echo "busctl failed retry --group $group" >&2
t "$dir/busctl" --no-progress failed retry --group "$group"
"$dir/busctl" queues
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
