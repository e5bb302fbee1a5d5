#!/usr/bin/env bash
# The lean footprint (DESIGN.md, "Second wave"): a program that imports only
# busline's bus and amqp packages builds with busline, amqp091-go and the
# standard library (google/uuid allowed), and its go.sum, after go mod tidy,
# names no other module: no Watermill, OpenTelemetry, SQL driver, CLI or
# browser module reaches a user through the root module. The integrations
# that need them live in nested modules (go.work).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/go.mod" <<EOF
module example.com/leancheck

go 1.25.0

require github.com/busline/busline v0.0.0-00010101000000-000000000000

replace github.com/busline/busline => $repo
EOF
cat >"$tmp/main.go" <<'EOF'
// A service that uses busline over RabbitMQ and nothing else.
package main

import (
	"context"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
)

func main() {
	tr, err := amqp.Dial(context.Background(), "amqp://localhost/", amqp.Options{})
	if err != nil {
		return
	}
	b, err := bus.New(tr, "service", bus.Options{})
	if err == nil {
		_ = b.Close()
	}
}
EOF

cd "$tmp"
export GOWORK=off GOFLAGS=-mod=mod
go mod tidy

allowed='^(example\.com/leancheck|github\.com/busline/busline|github\.com/rabbitmq/amqp091-go|github\.com/google/uuid)$'
# go mod tidy also records the sums of what the tests of the imported
# packages import (so that `go test all` verifies): goleak, which busline's
# and amqp091-go's own tests use. It is never in the build list.
test_only='^(go\.uber\.org/goleak)$'
status=0

# The program must compile: a check of a program that does not build would
# prove nothing.
go build -o /dev/null . || { echo "leancheck: the scratch program does not build" >&2; exit 1; }

build=$(go list -deps -f '{{with .Module}}{{.Path}}{{end}}' . | sort -u)
if bad=$(grep -Ev "$allowed" <<<"$build"); then
	echo "leancheck: a program importing bus and amqp builds with modules other than busline, amqp091-go and the standard library:" $bad >&2
	status=1
fi
if bad=$(awk '{print $1}' go.sum | sort -u | grep -Ev "$allowed" | grep -Ev "$test_only"); then
	echo "leancheck: the go.sum of a program importing bus and amqp names other modules:" $bad >&2
	status=1
fi

[ $status = 0 ] && echo "leancheck: a bus + amqp program builds with:" $build
exit $status
