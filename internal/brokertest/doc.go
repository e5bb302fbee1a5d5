// Package brokertest finds the RabbitMQ broker that tests talk to, and lets
// recovery tests restart it.
//
// # Finding the broker
//
// `make test` starts a private node (scripts/rabbitmq.sh) and exports its
// address in BUSLINE_AMQP_URL. Without that variable the RabbitMQ tests skip
// ([URL]), unless CI=true, where a missing broker is a failure.
//
// # Restarting it
//
// [Control] stops, kills and revives the node, or changes its settings,
// through scripts/rabbitmq.sh; tests that do so skip when the node was not
// started by the script. When the last test holding the node exclusively
// ends, whether it passed or failed half way, the node is healed before
// anyone else gets it: revived if it is down, its app started if stopped,
// its memory watermark reset and its alarms cleared. A test that is killed
// (go test's -timeout) takes the whole run down with it, and the node is
// stopped by `make test` anyway.
//
// # Sharing it
//
// `go test ./...` runs the test binaries of all packages at once against
// the one node. A test that calls [Control] holds the node exclusively
// until it ends; a test of another package that needs the node steady calls
// [Shared] and waits meanwhile. The lock is a file in the node's directory
// (BUSLINE_RABBITMQ_DIR), so it works across processes.
package brokertest
