package bench

import (
	"fmt"
	"os"
	"testing"

	"github.com/busline/busline/internal/benchkit"
)

// TestMain prints, once the benchmarks are done, the ratios of the bus's
// medians to watermill-amqp's for each benchmark and queue type of the
// run, with the load average: ratios within one run are what these
// benchmarks are for on a shared machine.
func TestMain(m *testing.M) {
	benchkit.Package = "bench"
	code := m.Run()
	fmt.Print(benchkit.Summary(benchkit.WatermillPairs, benchkit.QueueTypes...))
	os.Exit(code)
}
