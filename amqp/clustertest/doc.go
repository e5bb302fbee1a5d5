// Package clustertest holds the scenario tests of the RabbitMQ transport on
// a 3-node cluster (scripts/rabbitmq-cluster.sh): nodes killed, stopped
// and hung under load. They live in a package of their own so that go test
// runs them in parallel with the amqp package's tests; the package has no
// other code.
package clustertest
