#!/usr/bin/env bash
# Private RabbitMQ node for busline's tests and benchmarks.
#
#   scripts/rabbitmq.sh run -- CMD...   start a node, run CMD with BUSLINE_AMQP_URL set, stop the node
#   scripts/rabbitmq.sh start           start a node in .rabbitmq/ and print its settings
#   scripts/rabbitmq.sh stop            stop the node started by start
#   scripts/rabbitmq.sh ctl ARGS...     rabbitmqctl against the node (stop_app, start_app, ...)
#   scripts/rabbitmq.sh kill            kill -9 the node's Erlang VM
#   scripts/rabbitmq.sh revive          start the node again after kill (same data, same port)
#   scripts/rabbitmq.sh heal            after a test that disrupted the node: revive it if it is down,
#                                       start its app if stopped, reset the memory watermark, clear alarms
#
# The node runs as a separate Erlang node (its own name, ports, data and log
# directories under one temporary directory), so it never touches a system
# RabbitMQ. Debian's rabbitmq-server is installed when missing.
#
# If BUSLINE_AMQP_URL is already set, `run` uses that broker and starts nothing.
# If no broker can be started, `run` fails when CI=true and otherwise runs CMD
# without BUSLINE_AMQP_URL (the RabbitMQ tests then skip, saying why).
#
# Tests that restart the broker find this script in BUSLINE_RABBITMQ_CTL and
# the node's directory in BUSLINE_RABBITMQ_DIR.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The node's HOME is its directory (node_env); the command `run` runs keeps
# the caller's, where Go keeps its module and build caches.
caller_home=${HOME:-}
self="$here/$(basename "${BASH_SOURCE[0]}")"
sbin=/usr/lib/rabbitmq/bin

log() { echo "rabbitmq.sh: $*" >&2; }

# as_caller CMD...: run CMD with the caller's HOME (node_env replaces it with
# the node's directory, which stop_node deletes), unset if the caller had none.
as_caller() {
	if [ -n "$caller_home" ]; then
		HOME="$caller_home" "$@"
	else
		env -u HOME "$@"
	fi
}

install_server() {
	[ -x "$sbin/rabbitmq-server" ] && return 0
	log "rabbitmq-server is not installed; installing Debian's package"
	local sudo=""
	if [ "$(id -u)" != 0 ]; then
		command -v sudo >/dev/null || { log "not root and no sudo: cannot install rabbitmq-server"; return 1; }
		# -n: fail rather than wait for a password nobody can type (CI has no terminal).
		sudo="sudo -n"
	fi
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get -o DPkg::Lock::Timeout=300 update -q >&2 || return 1
	$sudo apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends rabbitmq-server >&2 || return 1
	[ -x "$sbin/rabbitmq-server" ]
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# node_env DIR: export the variables that make the node private to DIR.
node_env() {
	local dir=$1
	# shellcheck disable=SC1091
	. "$dir/node.env"
	export HOME="$dir" RABBITMQ_NODENAME="$NODE" RABBITMQ_NODE_PORT="$PORT" RABBITMQ_DIST_PORT="$DIST_PORT" \
		RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
		RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
		RABBITMQ_PID_FILE="$dir/node.pid" ERL_CRASH_DUMP="$dir/erl_crash.dump"
	# An idle Erlang VM spins its schedulers before sleeping (busy wait),
	# which on a shared 2-core machine running several nodes and the tests
	# takes CPU from everything else; a node for tests does not need it.
	export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+sbwt none +sbwtdcpu none +sbwtdio none"
}

ctl() { "$sbin/rabbitmqctl" -n "$NODE" "$@"; }

await_node() {
	local deadline=$((SECONDS + ${BUSLINE_RABBITMQ_START_TIMEOUT:-90}))
	until ctl ping >/dev/null 2>&1; do
		if [ $SECONDS -ge $deadline ]; then
			log "node $NODE did not answer within ${BUSLINE_RABBITMQ_START_TIMEOUT:-90}s; its log:"
			tail -30 "$HOME/log/$NODE.log" >&2 2>/dev/null || true
			return 1
		fi
		sleep 0.5
	done
	ctl await_startup --timeout 60 >/dev/null || {
		log "node $NODE did not boot; its log:"
		grep -m 10 -E 'error|reason' "$HOME/log/$NODE.log" >&2 || true
		return 1
	}
}

start_node() {
	local dir=$1
	install_server || return 1
	mkdir -p "$dir"
	# Ports below Linux's ephemeral range; the node's CLI tools use the
	# distribution port + 10000 and up, which stays clear of it too.
	local port=${BUSLINE_RABBITMQ_PORT:-5682}
	while ! port_free "$port" || ! port_free $((port + 1)); do
		port=$((port + 2))
		[ "$port" -lt 5900 ] || { log "no free port pair found"; return 1; }
	done
	cat >"$dir/node.env" <<EOF
NODE=busline-$$-$port@localhost
PORT=$port
DIST_PORT=$((port + 1))
EOF
	echo '[].' >"$dir/enabled_plugins"
	# Quiet logs: only warnings and errors, in the log file.
	cat >"$dir/rabbitmq.conf" <<EOF
log.console = false
log.file.level = warning
EOF
	node_env "$dir"
	local started=$SECONDS
	"$sbin/rabbitmq-server" -detached >"$dir/start.out" 2>&1 || { cat "$dir/start.out" >&2; return 1; }
	await_node || return 1
	echo "amqp://guest:guest@127.0.0.1:$PORT/" >"$dir/url"
	log "node $NODE up on port $PORT in $((SECONDS - started))s"
}

stop_node() {
	local dir=$1
	[ -f "$dir/node.env" ] || return 0
	node_env "$dir"
	ctl stop >/dev/null 2>&1 || kill_node "$dir" || true
	rm -rf "$dir"
}

kill_node() {
	local dir=$1
	node_env "$dir"
	local pid
	pid=$(cat "$dir/node.pid" 2>/dev/null || true)
	[ -n "$pid" ] || pid=$(pgrep -f -- "-sname $NODE" | head -1 || true)
	[ -n "$pid" ] || { log "no process for $NODE"; return 1; }
	kill -9 "$pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

revive_node() {
	local dir=$1
	node_env "$dir"
	"$sbin/rabbitmq-server" -detached >"$dir/start.out" 2>&1 || { cat "$dir/start.out" >&2; return 1; }
	await_node
}

# heal_node DIR: undo whatever a test did to the node (stop_app, kill, a
# memory alarm), so that a test that failed half way leaves it serving.
heal_node() {
	local dir=$1
	node_env "$dir"
	# rabbit:start() is start_app, and does nothing on a running app; 0.4
	# is RabbitMQ's default watermark. The alarm clears when it is reset.
	local fix='ok = rabbit:start(), ok = vm_memory_monitor:set_vm_memory_high_watermark(0.4), rabbit_alarm:get_alarms().'
	local out
	if ! out=$(ctl eval "$fix" 2>&1); then
		log "node $NODE does not answer ($out); reviving it"
		revive_node "$dir" || return 1
		out=$(ctl eval "$fix") || return 1
	fi
	local deadline=$((SECONDS + 15))
	until [ "$out" = "[]" ]; do
		if [ $SECONDS -ge $deadline ]; then
			log "node $NODE still has alarms: $out"
			return 1
		fi
		sleep 0.5
		out=$(ctl eval 'rabbit_alarm:get_alarms().') || return 1
	done
}

state_dir() { echo "${BUSLINE_RABBITMQ_DIR:-$here/../.rabbitmq}"; }

# Sourced (by scripts/rabbitmq-cluster.sh) for its functions only.
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

cmd=${1:-}
shift || true
case "$cmd" in
run)
	[ "${1:-}" = "--" ] && shift
	if [ -n "${BUSLINE_AMQP_URL:-}" ]; then
		log "using the broker at BUSLINE_AMQP_URL"
		exec "$@"
	fi
	dir=$(mktemp -d /tmp/busline-rabbitmq.XXXXXX)
	if start_node "$dir"; then
		trap 'stop_node "$dir"' EXIT
		export BUSLINE_AMQP_URL
		BUSLINE_AMQP_URL=$(cat "$dir/url")
		export BUSLINE_RABBITMQ_DIR="$dir" BUSLINE_RABBITMQ_CTL="$self"
		status=0
		( cd "$here/.." && as_caller "$@" ) || status=$?
		exit $status
	fi
	stop_node "$dir"
	if [ "${CI:-}" = "true" ]; then
		log "could not start RabbitMQ, and CI=true: failing"
		exit 1
	fi
	log "could not start RabbitMQ: the RabbitMQ tests will skip"
	as_caller "$@"
	;;
start)
	dir=$(state_dir)
	[ -f "$dir/url" ] && { log "already running"; cat "$dir/url"; exit 0; }
	start_node "$dir"
	echo "export BUSLINE_AMQP_URL=$(cat "$dir/url") BUSLINE_RABBITMQ_DIR=$dir BUSLINE_RABBITMQ_CTL=$self"
	;;
stop) stop_node "$(state_dir)" ;;
ctl)
	node_env "$(state_dir)"
	ctl "$@"
	;;
kill) kill_node "$(state_dir)" ;;
revive) revive_node "$(state_dir)" ;;
heal) heal_node "$(state_dir)" ;;
*)
	sed -n '2,22p' "$self" >&2
	exit 2
	;;
esac
