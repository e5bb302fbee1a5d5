# busline's build. `make test` is what CI runs (.ci/run); `make demo` runs the
# demo on the in-memory broker. Both work on a fresh Debian machine with Go.

GO       ?= go
RABBITMQ := scripts/rabbitmq.sh run --
# Go test flags for the full run; override for a quicker local loop.
TESTFLAGS ?= -race -count=1 -timeout 20m

# PKGS: every package of every module in go.work (the root module and the
# nested ones), so that one `go test` runs them all in parallel.
PKGS := $(shell $(GO) list -m -f '{{.Dir}}' | sed "s|^$(CURDIR)|.|; s|$$|/...|")

# COMPONENTS: the wrappers that each start a real component, export its
# address for the tests, run the rest of the line and stop the component.
# Each component adds its own line, so that they do not collide.
COMPONENTS := $(RABBITMQ)
# A 3-node RabbitMQ cluster for amqp/clustertest, started in the background
# while the tests compile and run (`make bench` does not start it).
COMPONENTS += scripts/rabbitmq-cluster.sh run --
# Headless Chromium for busctl's browser tests (installed when missing).
COMPONENTS += scripts/chromium.sh run --
COMPONENTS += scripts/postgres.sh run --

.PHONY: all test vet depcheck leancheck allocs unit bench bench-rabbitmq demo rabbitmq-start rabbitmq-stop

all: test

## test: vet, import-graph and footprint checks, the allocation tests, and every test with -race against a private RabbitMQ node
test: vet depcheck leancheck allocs
	$(COMPONENTS) $(GO) test $(TESTFLAGS) $(PKGS)

## unit: every test that needs no broker (the RabbitMQ tests skip)
unit:
	BUSLINE_AMQP_URL= $(GO) test $(TESTFLAGS) $(PKGS)

vet:
	$(GO) vet $(PKGS)

depcheck:
	scripts/depcheck.sh

## leancheck: a program importing only bus and amqp builds with busline, amqp091-go and the standard library
leancheck:
	scripts/leancheck.sh

## allocs: the tests that count allocations, which skip under -race (the race
## detector allocates, and sync.Pool drops items), so they run once without it
allocs:
	$(GO) test -count=1 -run 'Alloc|NewIDAndTime' ./bus ./memory ./middleware

## bench: every benchmark, against a private RabbitMQ node where needed; at
## the end, the RabbitMQ benchmarks' tables and ratios with the load average
bench:
	@rec=$$(mktemp); \
	BUSLINE_BENCH_RECORD=$$rec BUSLINE_RABBITMQ_CLUSTER=off $(COMPONENTS) $(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 30m $(PKGS); \
	status=$$?; \
	if [ -s $$rec ]; then $(GO) run ./internal/benchkit/benchtable $$rec; fi; \
	rm -f $$rec; exit $$status

## bench-rabbitmq: only the RabbitMQ comparisons (bus, rawbus, transport, raw
## amqp091-go, watermill-amqp v3; Send, Defer, Consume, deferral lateness),
## five interleaved rounds, then the README's tables as markdown and the
## ratios, with the load average (about 13 minutes; see scripts/bench-rabbitmq.sh)
bench-rabbitmq:
	$(RABBITMQ) scripts/bench-rabbitmq.sh

## demo: the demo program on the in-memory broker
demo:
	$(GO) run ./examples/demo

## rabbitmq-start / rabbitmq-stop: a node for a development session (prints the exports to use)
rabbitmq-start:
	scripts/rabbitmq.sh start

rabbitmq-stop:
	scripts/rabbitmq.sh stop
