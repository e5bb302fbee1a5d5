package bench

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestMain prints, once the benchmarks are done, the ratio of the bus's
// median msg/s to watermill-amqp's for each benchmark and queue type of
// the run, with the load average: ratios within one run are what these
// benchmarks are for on a shared machine.
func TestMain(m *testing.M) {
	code := m.Run()
	printRatios()
	os.Exit(code)
}

// rates holds the msg/s of each benchmark's runs with the largest b.N
// (the framework runs a benchmark with growing b.N).
var rates = struct {
	sync.Mutex
	byName map[string][]float64
	n      map[string]int
	load0  string
}{byName: map[string][]float64{}, n: map[string]int{}}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func record(b *testing.B, rate float64) {
	rates.Lock()
	defer rates.Unlock()
	if rates.load0 == "" {
		rates.load0 = loadavg()
	}
	switch n := rates.n[b.Name()]; {
	case b.N > n:
		rates.n[b.Name()] = b.N
		rates.byName[b.Name()] = []float64{rate}
	case b.N == n:
		rates.byName[b.Name()] = append(rates.byName[b.Name()], rate)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func printRatios() {
	rates.Lock()
	defer rates.Unlock()
	var lines []string
	for _, bench := range []string{"SendSerial", "Send64", "Consume"} {
		for _, typ := range queueTypes {
			bus := rates.byName[fmt.Sprintf("Benchmark%s/bus/%s", bench, typ)]
			wm := rates.byName[fmt.Sprintf("Benchmark%s/watermill/%s", bench, typ)]
			if len(bus) > 0 && len(wm) > 0 {
				lines = append(lines, fmt.Sprintf("ratio %-10s bus/watermill-amqp-v3 %-7s %.2f", bench, typ, median(bus)/median(wm)))
			}
		}
	}
	if len(lines) > 0 {
		fmt.Printf("ratios of median msg/s in this run (load average %s at the first benchmark, %s now):\n%s\n",
			rates.load0, loadavg(), strings.Join(lines, "\n"))
	}
}
