# busline's build. `make test` is what CI runs (.ci/run); `make demo` runs the
# demo on the in-memory broker. Both work on a fresh Debian machine with Go.

GO       ?= go
RABBITMQ := scripts/rabbitmq.sh run --
# Go test flags for the full run; override for a quicker local loop.
TESTFLAGS ?= -race -count=1 -timeout 20m

.PHONY: all test vet depcheck allocs unit bench demo rabbitmq-start rabbitmq-stop

all: test

## test: vet, import-graph check, the allocation tests, and every test with -race against a private RabbitMQ node
test: vet depcheck allocs
	$(RABBITMQ) $(GO) test $(TESTFLAGS) ./...

## unit: every test that needs no broker (the RabbitMQ tests skip)
unit:
	BUSLINE_AMQP_URL= $(GO) test $(TESTFLAGS) ./...

vet:
	$(GO) vet ./...

depcheck:
	scripts/depcheck.sh

## allocs: the tests that count allocations, which skip under -race (the race
## detector allocates, and sync.Pool drops items), so they run once without it
allocs:
	$(GO) test -count=1 -run 'Alloc|NewIDAndTime' ./bus ./memory ./middleware

## bench: every benchmark, against a private RabbitMQ node where needed
bench:
	$(RABBITMQ) $(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 30m ./...

## demo: the demo program on the in-memory broker
demo:
	$(GO) run ./examples/demo

## rabbitmq-start / rabbitmq-stop: a node for a development session (prints the exports to use)
rabbitmq-start:
	scripts/rabbitmq.sh start

rabbitmq-stop:
	scripts/rabbitmq.sh stop
