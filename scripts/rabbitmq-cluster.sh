#!/usr/bin/env bash
# A private 3-node RabbitMQ cluster for busline's cluster scenario tests.
#
#   scripts/rabbitmq-cluster.sh run -- CMD...  start a cluster in the background, run CMD at once with
#                                              BUSLINE_AMQP_CLUSTER_URLS set, stop the cluster
#   scripts/rabbitmq-cluster.sh start          start a cluster in .rabbitmq-cluster/ and print its settings
#   scripts/rabbitmq-cluster.sh stop           stop the cluster started by start
#   scripts/rabbitmq-cluster.sh await          wait until the cluster is up (fails if it could not start)
#   scripts/rabbitmq-cluster.sh node N         the Erlang name of node N (1, 2 or 3)
#   scripts/rabbitmq-cluster.sh ctl N ARGS...  rabbitmqctl against node N (stop_app, start_app, ...)
#   scripts/rabbitmq-cluster.sh kill N         kill -9 node N's Erlang VM
#   scripts/rabbitmq-cluster.sh freeze N       SIGSTOP node N (a hung node: its sockets stay open)
#   scripts/rabbitmq-cluster.sh thaw N         SIGCONT node N
#   scripts/rabbitmq-cluster.sh revive N       start node N again after kill (same data, same ports)
#   scripts/rabbitmq-cluster.sh heal           after a scenario: thaw every node, revive the dead ones,
#                                              start the stopped apps, wait until all three run
#
# Each node is a separate Erlang node (name `blc<pid>n<N>@localhost`, its
# own ports, MNESIA, log and HOME directories, the same .erlang.cookie),
# from Debian's rabbitmq-server, installed when missing by
# scripts/rabbitmq.sh's functions, which this script shares. Nodes 2 and 3
# join node 1 with stop_app, reset, join_cluster and start_app.
#
# The nodes detect a hung peer within seconds (net_ticktime 4 s,
# autoheal; see hung_node_settings below).
#
# `run` starts the cluster in the background (30-60 s) and runs CMD at
# once, so that the start overlaps with compiling and with the other
# tests; a test that needs the cluster waits for it with `await`, through
# BUSLINE_RABBITMQ_CLUSTER_CTL. If the cluster cannot start, `await` fails
# and prints why; `run` then fails when CI=true, and otherwise the cluster
# tests skip, saying why. If BUSLINE_AMQP_CLUSTER_URLS is already set,
# `run` uses that cluster and starts nothing (the scenario tests, which
# kill nodes, then skip unless BUSLINE_RABBITMQ_CLUSTER_CTL is set too);
# with BUSLINE_RABBITMQ_CLUSTER=off it starts nothing either (make bench).
set -euo pipefail

# shellcheck source=scripts/rabbitmq.sh
. "$(dirname "${BASH_SOURCE[0]}")/rabbitmq.sh"
self="$here/$(basename "${BASH_SOURCE[0]}")"
log() { echo "rabbitmq-cluster.sh: $*" >&2; }

nodes=(1 2 3)

# What lets the cluster get over a hung node (SIGSTOP, a VM stuck in
# swap) within seconds, as an operator would configure it; measured with
# amqp/clustertest's TestClusterHungNodeProbe (see the README's "Running
# on a cluster"). While a node hangs, every node waits for it in each
# Mnesia transaction (queue.bind, a new queue or exchange, and moving a
# quorum queue to its new leader) until Erlang's distribution declares it
# down: net_ticktime, 60 s by default, detection after 45-75 s. 4 s
# detects it after 3-5 s; a node that misses its ticks that long under
# load is declared down too (a false alarm: a partition). autoheal makes
# the side with fewer clients (the hung node, once it thaws, or one cut
# off by a false alarm) restart and rejoin by itself, where the default
# (ignore) leaves two halves that need a restart by hand. (pause_minority
# does not do it for a node that was frozen: on thawing it reconnects at
# once, sees a majority, and stays partitioned; measured.)
# Ra elects a new quorum queue leader within about 6 s by itself (aten,
# with its defaults). BUSLINE_RABBITMQ_CLUSTER_TUNING=off starts the
# cluster with RabbitMQ's defaults, for measuring them.
hung_node_settings='net_ticktime = 4
cluster_partition_handling = autoheal'

# plan DIR: choose the ports and names, write each node's directory
# (node.env, configuration, the shared cookie) and DIR/urls.
plan() {
	local dir=$1 port=${BUSLINE_RABBITMQ_CLUSTER_PORT:-5782} cookie urls=()
	mkdir -p "$dir"
	cookie=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
	for n in "${nodes[@]}"; do
		while ! port_free "$port" || ! port_free $((port + 1)); do
			port=$((port + 2))
			[ "$port" -lt 5990 ] || { log "no free port pair found"; return 1; }
		done
		local nd="$dir/n$n"
		mkdir -p "$nd"
		cat >"$nd/node.env" <<EOF
NODE=blc$$n$n@localhost
PORT=$port
DIST_PORT=$((port + 1))
EOF
		echo '[].' >"$nd/enabled_plugins"
		cat >"$nd/rabbitmq.conf" <<EOF
log.console = false
log.file.level = warning
EOF
		[ "${BUSLINE_RABBITMQ_CLUSTER_TUNING:-}" = "off" ] || echo "$hung_node_settings" >>"$nd/rabbitmq.conf"
		printf '%s' "$cookie" >"$nd/.erlang.cookie"
		chmod 400 "$nd/.erlang.cookie"
		urls+=("amqp://guest:guest@127.0.0.1:$port/")
		port=$((port + 2))
	done
	(IFS=,; echo "${urls[*]}") >"$dir/urls"
}

# start_cluster DIR: start the three nodes at once, then join 2 and 3 to 1.
start_cluster() {
	local dir=$1 started=$SECONDS
	install_server || return 1
	for n in "${nodes[@]}"; do
		(node_env "$dir/n$n" && "$sbin/rabbitmq-server" -detached >"$dir/n$n/start.out" 2>&1) ||
			{ cat "$dir/n$n/start.out" >&2; return 1; }
	done
	for n in "${nodes[@]}"; do
		(node_env "$dir/n$n" && await_node) || return 1
	done
	local first
	first=$(node_name "$dir" 1)
	for n in 2 3; do
		(
			node_env "$dir/n$n"
			ctl stop_app >/dev/null && ctl reset >/dev/null && ctl join_cluster "$first" >/dev/null && ctl start_app >/dev/null
		) || { log "node $n could not join $first"; return 1; }
	done
	(node_env "$dir/n1" && ctl await_online_nodes 3 --timeout 60 >/dev/null) || { log "the nodes did not form a cluster"; return 1; }
	log "3-node cluster up in $((SECONDS - started))s: $(cat "$dir/urls")"
}

stop_cluster() {
	local dir=$1
	[ -d "$dir" ] || return 0
	# Killed, not stopped: the data goes with the directory, and a frozen
	# node would not answer a stop.
	for n in "${nodes[@]}"; do
		[ -f "$dir/n$n/node.env" ] && (kill_node "$dir/n$n" 2>/dev/null || true)
	done
	rm -rf "$dir"
}

node_name() { (. "$1/n$2/node.env" && echo "$NODE"); }

node_pid() {
	local nd="$1/n$2" pid NODE
	pid=$(cat "$nd/node.pid" 2>/dev/null || true)
	if [ -z "$pid" ]; then
		NODE=$(node_name "$1" "$2")
		pid=$(pgrep -f -- "-sname $NODE" | head -1 || true)
	fi
	[ -n "$pid" ] || { log "no process for node $2"; return 1; }
	echo "$pid"
}

# await_cluster DIR: wait for the background start of `run` (or for a
# cluster started with `start`).
await_cluster() {
	local dir=$1 deadline=$((SECONDS + ${BUSLINE_RABBITMQ_CLUSTER_TIMEOUT:-540}))
	until [ -f "$dir/ready" ]; do
		if [ -f "$dir/failed" ]; then
			log "the cluster could not start:"
			cat "$dir/start.log" >&2 || true
			return 1
		fi
		if [ $SECONDS -ge $deadline ]; then
			log "the cluster did not start within ${BUSLINE_RABBITMQ_CLUSTER_TIMEOUT:-540}s:"
			cat "$dir/start.log" >&2 || true
			return 1
		fi
		sleep 0.2
	done
}

heal_cluster() {
	local dir=$1 names=() n pid
	for n in "${nodes[@]}"; do
		names+=("'$(node_name "$dir" "$n")'")
		pid=$(node_pid "$dir" "$n" 2>/dev/null || true)
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			kill -CONT "$pid" 2>/dev/null || true
		else
			log "node $n is not running; reviving it"
			(revive_node "$dir/n$n" >/dev/null) || return 1
		fi
	done
	# One CLI call, where each rabbitmqctl starts an Erlang VM (seconds on
	# a loaded machine): start the app on every node (it does nothing on
	# a running one), retrying while a node restarts to rejoin
	# (autoheal), then wait until the three run.
	local all heal
	all=$(IFS=,; echo "${names[*]}")
	heal="Start = fun S(N, K) -> case rpc:call(N, rabbit, start, []) of ok -> ok; E when K =:= 0 -> E; _ -> timer:sleep(500), S(N, K - 1) end end,
		[ok = Start(N, 240) || N <- [$all]], ok = rabbit_nodes:await_running_count(3, 120000)."
	(node_env "$dir/n3" && ctl eval "$heal" >/dev/null) && return 0
	log "healing through node 3 failed; node by node"
	# Autoheal may restart a node's app just after it was started here
	# (seen once in CI: await_online_nodes then found n1's app stopped),
	# so start them all and wait, up to three times.
	local try
	for try in 1 2 3; do
		for n in "${nodes[@]}"; do
			(
				node_env "$dir/n$n"
				if ! ctl eval 'ok = rabbit:start().' >/dev/null 2>&1; then
					log "node $n does not answer; reviving it"
					revive_node "$dir/n$n" >/dev/null || exit 1
					ctl eval 'ok = rabbit:start().' >/dev/null
				fi
			) || return 1
		done
		(node_env "$dir/n1" && ctl await_online_nodes 3 --timeout 60 >/dev/null) && return 0
		log "the cluster is not whole yet (try $try of 3)"
		sleep 10
	done
	return 1
}

state_dir() { echo "${BUSLINE_RABBITMQ_CLUSTER_DIR:-$here/../.rabbitmq-cluster}"; }

cmd=${1:-}
shift || true
case "$cmd" in
run)
	[ "${1:-}" = "--" ] && shift
	if [ -n "${BUSLINE_AMQP_CLUSTER_URLS:-}" ]; then
		log "using the cluster at BUSLINE_AMQP_CLUSTER_URLS"
		exec "$@"
	fi
	if [ "${BUSLINE_RABBITMQ_CLUSTER:-}" = "off" ]; then
		# make bench: a cluster booting would disturb the measurements.
		exec "$@"
	fi
	dir=$(mktemp -d /tmp/busline-rabbitmq-cluster.XXXXXX)
	if ! plan "$dir"; then
		rm -rf "$dir"
		[ "${CI:-}" = "true" ] && { log "could not plan the cluster, and CI=true: failing"; exit 1; }
		log "could not plan the cluster: the cluster tests will skip"
		as_caller "$@"
		exit
	fi
	(
		if start_cluster "$dir" >"$dir/start.log" 2>&1; then
			touch "$dir/ready"
		else
			touch "$dir/failed"
		fi
	) &
	starter=$!
	trap 'kill "$starter" 2>/dev/null || true; wait "$starter" 2>/dev/null || true; stop_cluster "$dir"' EXIT
	export BUSLINE_AMQP_CLUSTER_URLS BUSLINE_RABBITMQ_CLUSTER_DIR="$dir" BUSLINE_RABBITMQ_CLUSTER_CTL="$self"
	BUSLINE_AMQP_CLUSTER_URLS=$(cat "$dir/urls")
	status=0
	(cd "$here/.." && as_caller "$@") || status=$?
	if [ -f "$dir/failed" ]; then
		cat "$dir/start.log" >&2 || true
		if [ "${CI:-}" = "true" ]; then
			log "the cluster could not start, and CI=true: failing"
			[ $status -ne 0 ] || status=1
		else
			log "the cluster could not start: the cluster tests skipped"
		fi
	fi
	exit $status
	;;
start)
	dir=$(state_dir)
	[ -f "$dir/ready" ] && { log "already running"; cat "$dir/urls"; exit 0; }
	plan "$dir"
	if ! start_cluster "$dir"; then
		stop_cluster "$dir"
		exit 1
	fi
	touch "$dir/ready"
	echo "export BUSLINE_AMQP_CLUSTER_URLS=$(cat "$dir/urls") BUSLINE_RABBITMQ_CLUSTER_DIR=$dir BUSLINE_RABBITMQ_CLUSTER_CTL=$self"
	;;
stop) stop_cluster "$(state_dir)" ;;
await) await_cluster "$(state_dir)" ;;
node) node_name "$(state_dir)" "$1" ;;
ctl)
	n=$1
	shift
	node_env "$(state_dir)/n$n"
	ctl "$@"
	;;
kill) kill_node "$(state_dir)/n$1" ;;
freeze) kill -STOP "$(node_pid "$(state_dir)" "$1")" ;;
thaw) kill -CONT "$(node_pid "$(state_dir)" "$1")" ;;
revive) revive_node "$(state_dir)/n$1" ;;
heal) heal_cluster "$(state_dir)" ;;
*)
	sed -n '2,30p' "$self" >&2
	exit 2
	;;
esac
