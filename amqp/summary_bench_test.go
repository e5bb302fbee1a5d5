package amqp_test

import (
	"fmt"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/internal/benchkit"
)

// The benchmarks of one run record their metrics with package benchkit,
// and the test binary prints the ratios that matter at its end (see
// main_test.go): bus against rawbus, transport against raw, consume with
// coalesced acks against raw amqp091-go acking each message, Defer against
// Send. Ratios within one run are what the benchmarks are for: the machine
// may be shared, and the load average printed with them says how much.
func init() {
	benchkit.Package = "amqp"
	amqp.AfterTests = func() {
		dropDeferLevels()
		fmt.Print(benchkit.Summary(benchkit.AMQPPairs, benchkit.QueueTypes...))
	}
}
