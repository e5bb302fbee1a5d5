#!/usr/bin/env bash
# Enforces the one-way import graph of docs/architecture.md: the core packages never pull in a
# RabbitMQ or Watermill library, and transport imports the standard library only.
set -euo pipefail
cd "$(dirname "$0")/.."
# The root module's path (go list -m would list every module of go.work).
mod=$(awk '/^module /{print $2; exit}' go.mod)
status=0

# pkgs_matching PATTERN...: the packages among PATTERN that exist.
pkgs() { go list "$@" 2>/dev/null || true; }

for p in $(pkgs ./transport/... ./memory/... ./middleware/... ./bus/... ./conformance/...); do
	bad=$(go list -deps "$p" | grep -E 'github.com/rabbitmq/|ThreeDotsLabs/watermill' || true)
	if [ -n "$bad" ]; then
		echo "depcheck: $p must not import a RabbitMQ or Watermill library, but depends on: $bad" >&2
		status=1
	fi
done

for p in $(pkgs ./transport/...); do
	bad=$(go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' "$p" | grep -v -x -F "$p" | grep -v "^$mod/transport" || true)
	if [ -n "$bad" ]; then
		echo "depcheck: $p must import the standard library only, but depends on: $bad" >&2
		status=1
	fi
done

# OpenTelemetry stays out of the root module (otelbus is a module of its
# own): no package of it imports OpenTelemetry, and its go.mod does not
# require it, so a program that uses only bus and amqp builds without it.
bad=$(go list -deps ./... | grep '^go.opentelemetry.io/' | sort -u || true)
if [ -n "$bad" ]; then
	echo "depcheck: the root module's packages must not import OpenTelemetry, but depend on: $bad" >&2
	status=1
fi
bad=$(GOWORK=off go list -m all | grep '^go.opentelemetry.io/' || true)
if [ -n "$bad" ]; then
	echo "depcheck: the root module's go.mod must not require OpenTelemetry, but its build list has: $bad" >&2
	status=1
fi

# google.golang.org/protobuf stays out of the root module: the protobuf
# codec and tomodachi's envelopes are nested modules (protocodec, tomodachi).
bad=$( (go list -deps ./...; GOWORK=off go list -m all) | grep '^google.golang.org/protobuf' | sort -u || true)
if [ -n "$bad" ]; then
	echo "depcheck: the root module must not import or require google.golang.org/protobuf, but has: $bad" >&2
	status=1
fi

# SQL drivers stay out of the root module, and the outbox package imports
# none: its users bring theirs (its tests and examples use pgx and
# modernc.org/sqlite).
drivers='^(github.com/jackc/pgx|modernc.org/sqlite|github.com/lib/pq|github.com/mattn/go-sqlite3|github.com/go-sql-driver/)'
bad=$( (go list -deps ./...; GOWORK=off go list -m all) | grep -E "$drivers" | sort -u || true)
if [ -n "$bad" ]; then
	echo "depcheck: the root module must not import or require an SQL driver, but has: $bad" >&2
	status=1
fi
for m in outbox:. saga:./...; do
	dir=${m%%:*}
	[ -d "$dir" ] || continue
	bad=$(cd "$dir" && go list -deps "${m#*:}" | grep -E "$drivers" || true)
	if [ -n "$bad" ]; then
		echo "depcheck: the packages of $dir must not import an SQL driver, but depend on: $bad" >&2
		status=1
	fi
done

# Fast JSON libraries stay out of the root module (they reach into the
# runtime through unsafe): bus.JSON is encoding/json, and the opt-in codec
# over go-json is the module jsoncodec.
jsonlibs='^(github.com/goccy/go-json|github.com/segmentio/encoding|github.com/json-iterator/go|github.com/bytedance/sonic)'
bad=$( (go list -deps ./...; GOWORK=off go list -m all) | grep -E "$jsonlibs" | sort -u || true)
if [ -n "$bad" ]; then
	echo "depcheck: the root module must not import or require a JSON library other than encoding/json, but has: $bad" >&2
	status=1
fi

# Who may import whom inside the module (docs/architecture.md, "Layers and the import rule").
check() { # check PKGDIR ALLOWED-PREFIX...
	local dir=$1; shift
	for p in $(pkgs "./$dir/..."); do
		for dep in $(go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' "$p" | grep "^$mod/" || true); do
			ok=0
			for allowed in "$dir" "$@"; do
				case "$dep" in "$mod/$allowed" | "$mod/$allowed/"*) ok=1 ;; esac
			done
			if [ $ok = 0 ]; then
				echo "depcheck: $p may not import $dep" >&2
				status=1
			fi
		done
	done
}
check transport
check memory transport internal
check amqp transport internal
check middleware transport internal
check bus transport middleware internal
check conformance transport bus middleware internal
check otelbus transport middleware bus
check saga transport middleware bus outbox

[ $status = 0 ] && echo "depcheck: import graph ok"
exit $status
