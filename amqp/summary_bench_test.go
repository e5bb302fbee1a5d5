package amqp_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/busline/busline/amqp"
)

// The benchmarks of one run record their msg/s and client CPU time per
// message here, and the test binary prints the ratios that matter at its
// end (see main_test.go): bus against
// rawbus, transport against raw, consume with coalesced acks against raw
// amqp091-go acking each message, Defer against Send. Ratios within one run
// are what the benchmarks are for: the machine may be shared, and the load
// average printed with them says how much.
var results = struct {
	sync.Mutex
	rate  map[string][]float64 // msg/s by benchmark name, of the runs with the largest b.N
	cpu   map[string][]float64 // client-cpu-ns/msg, likewise
	n     map[string]int
	last  map[string]*testing.B // the run that recorded last, by name
	load0 string
}{rate: map[string][]float64{}, cpu: map[string][]float64{}, n: map[string]int{}, last: map[string]*testing.B{}}

func init() { amqp.AfterTests = printRatios }

// loadavg returns /proc/loadavg's first three fields ("" where there is none).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// record keeps the msg/s and client CPU time per message of a benchmark
// run. The framework runs a benchmark with growing b.N; only the runs with
// the largest are kept; a run that records twice (the consume benchmarks
// measure filling their queue first) keeps its last figures.
func record(b *testing.B, rate, cpu float64) {
	results.Lock()
	defer results.Unlock()
	if results.load0 == "" {
		results.load0 = loadavg()
	}
	name := b.Name()
	if results.last[name] == b && results.n[name] == b.N {
		k := len(results.rate[name]) - 1
		results.rate[name][k], results.cpu[name][k] = rate, cpu
		return
	}
	results.last[name] = b
	switch n := results.n[name]; {
	case b.N > n:
		results.n[name] = b.N
		results.rate[name] = []float64{rate}
		results.cpu[name] = []float64{cpu}
	case b.N == n:
		results.rate[name] = append(results.rate[name], rate)
		results.cpu[name] = append(results.cpu[name], cpu)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// ratio returns the ratio of the medians of benchmarks a and b in m.
func ratio(m map[string][]float64, a, b string) (float64, bool) {
	ra, rb := m[a], m[b]
	if len(ra) == 0 || len(rb) == 0 || median(rb) == 0 {
		return 0, false
	}
	return median(ra) / median(rb), true
}

// ratioPairs lists what the summary compares: each entry is a label, a
// benchmark and its baseline, with %s standing for the queue type.
var ratioPairs = []struct{ label, a, b string }{
	{"SendSerial bus/rawbus", "BenchmarkSendSerial/bus/%s", "BenchmarkSendSerial/rawbus/%s"},
	{"SendSerial transport/raw", "BenchmarkSendSerial/transport/%s", "BenchmarkSendSerial/raw/%s"},
	{"Send64 bus/rawbus", "BenchmarkSend64/bus/%s", "BenchmarkSend64/rawbus/%s"},
	{"Send64 transport/raw", "BenchmarkSend64/transport/%s", "BenchmarkSend64/raw/%s"},
	{"SendAsync async1/send64 (one poster vs 64 senders, window 64)", "BenchmarkSendAsync/async1/%s", "BenchmarkSendAsync/send64/%s"},
	{"Defer64/Send64 bus", "BenchmarkDefer64/bus/%s", "BenchmarkSend64/bus/%s"},
	{"Defer64/Send64 transport", "BenchmarkDefer64/transport/%s", "BenchmarkSend64/transport/%s"},
	{"Defer64/Send64 raw", "BenchmarkDefer64/raw/%s", "BenchmarkSend64/raw/%s"},
	{"Defer64 raw-topic/raw (entering through the level's exchange)", "BenchmarkDefer64/raw-topic/%s", "BenchmarkDefer64/raw/%s"},
	{"Consume bus/raw (coalesced acks vs an ack each)", "BenchmarkConsume/bus/%s", "BenchmarkConsume/raw/%s"},
	{"Consume bus/rawbus", "BenchmarkConsume/bus/%s", "BenchmarkConsume/rawbus/%s"},
	{"Consume transport/raw", "BenchmarkConsume/transport/%s", "BenchmarkConsume/raw/%s"},
}

func printRatios() {
	results.Lock()
	defer results.Unlock()
	var lines []string
	for _, p := range ratioPairs {
		for _, typ := range queueTypes {
			a, b := fmt.Sprintf(p.a, typ), fmt.Sprintf(p.b, typ)
			if r, ok := ratio(results.rate, a, b); ok {
				line := fmt.Sprintf("ratio %-50s %-7s %.2f", p.label, typ, r)
				if c, ok := ratio(results.cpu, a, b); ok {
					line += fmt.Sprintf("  (client CPU per message %.2f)", c)
				}
				lines = append(lines, line)
			}
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Printf("ratios of median msg/s in this run, and of client CPU time per message (load average %s at the first benchmark, %s now):\n%s\n",
		results.load0, loadavg(), strings.Join(lines, "\n"))
}
