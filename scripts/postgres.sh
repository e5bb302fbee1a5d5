#!/usr/bin/env bash
# Private PostgreSQL cluster for busline's tests and benchmarks.
#
#   scripts/postgres.sh run -- CMD...   start a cluster, run CMD with BUSLINE_POSTGRES_URL set, stop and remove it
#   scripts/postgres.sh start           start a cluster in .postgres/ and print its settings
#   scripts/postgres.sh stop            stop and remove the cluster started by start
#
# The cluster is private: initdb into a temporary directory, its own port on
# 127.0.0.1 and its own socket directory, run by pg_ctl as the non-root
# `postgres` user (PostgreSQL refuses to run as root), so it never touches a
# system PostgreSQL. Debian's postgresql is installed when missing, and the
# postgres user created when missing.
#
# If BUSLINE_POSTGRES_URL is already set, `run` uses that database and starts
# nothing. If no cluster can be started, `run` fails when CI=true and
# otherwise runs CMD without BUSLINE_POSTGRES_URL (the PostgreSQL tests then
# skip, saying why).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
user=postgres

log() { echo "postgres.sh: $*" >&2; }

bindir() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
	[ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

install_server() {
	bindir >/dev/null && return 0
	log "PostgreSQL is not installed; installing Debian's package"
	local sudo=""
	if [ "$(id -u)" != 0 ]; then
		command -v sudo >/dev/null || { log "not root and no sudo: cannot install postgresql"; return 1; }
		sudo="sudo -n"
	fi
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get -o DPkg::Lock::Timeout=300 update -q >&2 || return 1
	$sudo apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends postgresql >&2 || return 1
	bindir >/dev/null
}

# as_pg CMD...: run CMD as the postgres user (as ourselves when not root).
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		if ! id "$user" >/dev/null 2>&1; then
			useradd --system --no-create-home --shell /usr/sbin/nologin "$user" || return 1
		fi
		runuser -u "$user" -- "$@"
	else
		"$@"
	fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_cluster() {
	local dir=$1
	install_server || return 1
	local bin
	bin=$(bindir)
	mkdir -p "$dir"
	chmod 755 "$dir"
	[ "$(id -u)" = 0 ] && { id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"; chown "$user" "$dir"; }
	local port=${BUSLINE_POSTGRES_PORT:-5442}
	while ! port_free "$port"; do
		port=$((port + 1))
		[ "$port" -lt 5500 ] || { log "no free port found"; return 1; }
	done
	as_pg "$bin/initdb" -D "$dir/data" -U busline --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.out" 2>&1 ||
		as_pg "$bin/initdb" -D "$dir/data" -U busline --auth=trust -E UTF8 --no-locale >"$dir/initdb.out" 2>&1 ||
		{ cat "$dir/initdb.out" >&2; return 1; }
	local started=$SECONDS
	# fsync off: a test cluster need not survive a power cut, and it keeps
	# commits from waiting on a shared disk.
	as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
		-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
		start >"$dir/start.out" 2>&1 || { cat "$dir/start.out" "$dir/log" >&2 2>/dev/null; return 1; }
	echo "$port" >"$dir/port"
	echo "postgres://busline@127.0.0.1:$port/postgres?sslmode=disable" >"$dir/url"
	log "cluster up on port $port in $((SECONDS - started))s"
}

stop_cluster() {
	local dir=$1
	[ -d "$dir/data" ] || { rm -rf "$dir"; return 0; }
	local bin
	bin=$(bindir) || true
	[ -n "$bin" ] && as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}

state_dir() { echo "${BUSLINE_POSTGRES_DIR:-$here/../.postgres}"; }

cmd=${1:-}
shift || true
case "$cmd" in
run)
	[ "${1:-}" = "--" ] && shift
	if [ -n "${BUSLINE_POSTGRES_URL:-}" ]; then
		log "using the database at BUSLINE_POSTGRES_URL"
		exec "$@"
	fi
	dir=$(mktemp -d /tmp/busline-postgres.XXXXXX)
	if start_cluster "$dir"; then
		trap 'stop_cluster "$dir"' EXIT
		export BUSLINE_POSTGRES_URL
		BUSLINE_POSTGRES_URL=$(cat "$dir/url")
		status=0
		( cd "$here/.." && "$@" ) || status=$?
		exit $status
	fi
	stop_cluster "$dir"
	if [ "${CI:-}" = "true" ]; then
		log "could not start PostgreSQL, and CI=true: failing"
		exit 1
	fi
	log "could not start PostgreSQL: the PostgreSQL tests will skip"
	"$@"
	;;
start)
	dir=$(state_dir)
	[ -f "$dir/url" ] && { log "already running"; echo "export BUSLINE_POSTGRES_URL=$(cat "$dir/url")"; exit 0; }
	dir=$(mkdir -p "$dir" && cd "$dir" && pwd)
	start_cluster "$dir"
	echo "export BUSLINE_POSTGRES_URL=$(cat "$dir/url")"
	;;
stop) stop_cluster "$(state_dir)" ;;
*)
	sed -n '2,17p' "$self" >&2
	exit 2
	;;
esac
