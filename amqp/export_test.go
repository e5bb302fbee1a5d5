package amqp

import (
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/transport"
)

// AfterTests, if set, runs once every test and benchmark of the binary is
// done: the benchmarks print their summary of ratios from it.
var AfterTests func()

// Plan returns what t publishes for o, now: the exchange, the routing key
// and the publishing (BCC and expiration of a deferred message included).
// The benchmarks publish it with amqp091-go to tell the transport's cost
// from the broker's.
func Plan(t *Transport, o transport.Outgoing) (exchange, key string, msg amqp091.Publishing, err error) {
	d, err := t.plan(&o, time.Now())
	return d.exchange, d.key, d.msg, err
}
