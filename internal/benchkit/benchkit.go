// Package benchkit holds what the RabbitMQ benchmarks of package amqp and
// of the nested module bench share: the message they send, the meter of
// msg/s and of the client's and the broker's CPU time per message, the
// senders and the record of a run, which the test binaries print as ratios
// at their end and append, for several runs, to a file that [benchtable]
// turns into the README's tables.
//
// # Records
//
// Report records a benchmark run's metrics in the process, for Summary,
// and, when BUSLINE_BENCH_RECORD names a file, appends them to it as one
// JSON line: `make bench-rabbitmq` runs the test binaries several times,
// interleaved, with one file, and benchtable prints the medians.
package benchkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/internal/cputime"
)

// Payload encodes to a 256-byte JSON body with encoding/json: its string
// is printable ASCII, which JSON does not escape.
type Payload struct {
	Data string
}

// MessageType names Payload on the bus.
func (Payload) MessageType() string { return "bench.Payload" }

// Message is the Payload every benchmark sends.
var Message = Payload{Data: strings.Repeat("x", 256-len(`{"Data":""}`))}

// Quiet is the benchmarks' logger: a nil Logger logs to slog.Default, whose
// lines would break the benchmarks' result lines.
var Quiet = slog.New(slog.DiscardHandler)

// Dial connects busline's transport to the broker of the benchmarks and
// closes it when b ends.
func Dial(b testing.TB, opts amqp.Options) *amqp.Transport {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := amqp.Dial(ctx, brokertest.URL(b), opts)
	if err != nil {
		b.Fatalf("Dial: %v", err)
	}
	b.Cleanup(func() { _ = tr.Close() })
	return tr
}

// QueueName returns a fresh queue name, the queue deleted through tr when
// b ends.
func QueueName(b testing.TB, tr *amqp.Transport) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	q := "bench-" + strings.ReplaceAll(b.Name(), "/", "-") + "-" + hex.EncodeToString(r[:])
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = tr.DeleteQueue(ctx, q)
	})
	return q
}

// Sender returns a send-only bus client on tr, closed when b ends.
func Sender(b testing.TB, tr *amqp.Transport) *bus.Bus {
	c, err := bus.New(tr, "", bus.Options{Logger: Quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// Meter marks the start of a measurement.
type Meter struct {
	wall     time.Time
	cpu      time.Duration
	broker   time.Duration
	brokerOK bool
}

// Start starts a measurement of b, once the broker has settled (see
// settleBroker), with b's timer reset.
func Start(b *testing.B) Meter {
	b.StopTimer()
	settleBroker()
	b.ResetTimer()
	b.StartTimer()
	broker, ok := brokerCPU()
	return Meter{time.Now(), cputime.Used(), broker, ok}
}

// Report reports and records msg/s, which RabbitMQ bounds and other load on
// a shared machine lowers; the client's CPU time per message
// (client-cpu-ns/msg: the process's user and system time, amqp091-go's
// included), which measures the library's own cost; and the broker's
// (broker-cpu-ns/msg: the RabbitMQ node's, see brokerCPU), which measures
// what the library's way of using RabbitMQ costs RabbitMQ, for b.N
// messages since m. On a machine whose cores the client and the broker
// share, and keep busy, the two sum to the CPU time a message costs, which
// bounds the rate: that sum's parts say which share of a gap between two
// clients is whose.
func Report(b *testing.B, m Meter) {
	rate := float64(b.N) / time.Since(m.wall).Seconds()
	b.ReportMetric(rate, "msg/s")
	metrics := map[string]float64{"msg/s": rate}
	if used := cputime.Used() - m.cpu; used > 0 {
		cpu := float64(used.Nanoseconds()) / float64(b.N)
		b.ReportMetric(cpu, "client-cpu-ns/msg")
		metrics["client-cpu-ns/msg"] = cpu
	}
	if broker, ok := brokerCPU(); ok && m.brokerOK && broker > m.broker {
		cpu := float64((broker - m.broker).Nanoseconds()) / float64(b.N)
		b.ReportMetric(cpu, "broker-cpu-ns/msg")
		metrics["broker-cpu-ns/msg"] = cpu
	}
	Record(b, metrics)
}

// Parallel runs b.N calls of f from n goroutines and reports the rate.
func Parallel(b *testing.B, n int, f func() error) {
	m := Start(b)
	if err := run(b.N, n, f); err != nil {
		b.Fatal(err)
	}
	Report(b, m)
}

// Fill makes n calls of f from 64 goroutines, untimed: it fills a queue.
func Fill(b *testing.B, n int, f func() error) {
	b.StopTimer()
	defer b.StartTimer()
	if err := run(n, 64, f); err != nil {
		b.Fatal(err)
	}
}

func run(calls, goroutines int, f func() error) error {
	var left atomic.Int64
	left.Store(int64(calls))
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for range goroutines {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := f(); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		return *err
	}
	return nil
}

// SettleGC collects the garbage of filling a queue before a consume
// benchmark starts its meter, so that sweeping it is not charged to the
// consumer.
func SettleGC() { runtime.GC() }

// results holds the metrics of the benchmark runs of this process.
var results = struct {
	sync.Mutex
	byName map[string]map[string][]float64 // metric values by benchmark and metric, of the runs with the largest b.N
	n      map[string]int
	last   map[string]*testing.B
	load0  string
}{byName: map[string]map[string][]float64{}, n: map[string]int{}, last: map[string]*testing.B{}}

// LoadAvg returns /proc/loadavg's first three fields ("" where there is none).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// Package names the package whose benchmarks run in this process ("amqp",
// "bench"): a record file holds several, whose benchmarks may share names.
var Package string

// round matches the suffix the testing package gives a benchmark run
// again under the same name in one process.
var round = regexp.MustCompile(`#\d+$`)

// Record keeps the metrics of a benchmark run. The framework runs a
// benchmark with growing b.N; only the runs with the largest are kept; a
// run that records twice (the consume benchmarks measure filling their
// queue first) keeps its last figures.
func Record(b *testing.B, metrics map[string]float64) {
	name := round.ReplaceAllString(b.Name(), "")
	load := LoadAvg()
	results.Lock()
	defer results.Unlock()
	if results.load0 == "" {
		results.load0 = load
	}
	if results.last[name] == b && results.n[name] == b.N {
		for k, v := range metrics {
			vs := results.byName[name][k]
			vs[len(vs)-1] = v
		}
		return
	}
	results.last[name] = b
	switch n := results.n[name]; {
	case b.N > n:
		results.n[name] = b.N
		results.byName[name] = map[string][]float64{}
		fallthrough
	case b.N == n:
		for k, v := range metrics {
			results.byName[name][k] = append(results.byName[name][k], v)
		}
	default:
		return
	}
	appendRecord(Line{Package: Package, Name: name, N: b.N, Metrics: metrics, Load: load})
}

// Line is one benchmark run in a record file.
type Line struct {
	Package string             `json:"package"`
	Name    string             `json:"name"`
	N       int                `json:"n"`
	Metrics map[string]float64 `json:"metrics"`
	Load    string             `json:"load"`
}

var recordMu sync.Mutex

func appendRecord(l Line) {
	path := os.Getenv("BUSLINE_BENCH_RECORD")
	if path == "" {
		return
	}
	recordMu.Lock()
	defer recordMu.Unlock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchkit: %v\n", err)
		return
	}
	defer f.Close()
	if err := json.NewEncoder(f).Encode(l); err != nil {
		fmt.Fprintf(os.Stderr, "benchkit: %v\n", err)
	}
}

// Median returns the median of xs (the upper one of an even count).
func Median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// Pair is a ratio to print: a label, a benchmark and its baseline, with
// %s standing for the queue type in both names.
type Pair struct{ Label, A, B string }

// Summary returns the ratios of pairs in this process's records, for each
// queue type, of median msg/s and of median client and broker CPU time per
// message, with the load average; "" when none has both sides.
func Summary(pairs []Pair, queueTypes ...string) string {
	results.Lock()
	defer results.Unlock()
	lines := Ratios(results.byName, pairs, queueTypes...)
	if len(lines) == 0 {
		return ""
	}
	return fmt.Sprintf("ratios of median msg/s in this run, and of client and broker CPU time per message (load average %s at the first benchmark, %s now):\n%s\n",
		results.load0, LoadAvg(), strings.Join(lines, "\n"))
}

// Ratios returns a line per pair and queue type of byName (metric values
// by benchmark and metric) that has both sides.
func Ratios(byName map[string]map[string][]float64, pairs []Pair, queueTypes ...string) []string {
	ratio := func(a, b, metric string) (float64, bool) {
		ra, rb := byName[a][metric], byName[b][metric]
		if len(ra) == 0 || len(rb) == 0 || Median(rb) == 0 {
			return 0, false
		}
		return Median(ra) / Median(rb), true
	}
	var lines []string
	for _, p := range pairs {
		for _, typ := range queueTypes {
			a, b := fmt.Sprintf(p.A, typ), fmt.Sprintf(p.B, typ)
			r, ok := ratio(a, b, "msg/s")
			if !ok {
				continue
			}
			line := fmt.Sprintf("ratio %-54s %-7s %.2f", p.Label, typ, r)
			if c, ok := ratio(a, b, "client-cpu-ns/msg"); ok {
				line += fmt.Sprintf("  (client CPU per message %.2f", c)
				if c, ok := ratio(a, b, "broker-cpu-ns/msg"); ok {
					line += fmt.Sprintf(", broker's %.2f", c)
				}
				line += ")"
			}
			lines = append(lines, line)
		}
	}
	return lines
}

// QueueTypes are the queue types the RabbitMQ benchmarks run on.
var QueueTypes = []string{"classic", "quorum"}

// AMQPPairs are the ratios package amqp's benchmarks print: the issue's
// targets (issue 18) where one is set.
var AMQPPairs = []Pair{
	{"SendSerial bus/rawbus", "BenchmarkSendSerial/bus/%s", "BenchmarkSendSerial/rawbus/%s"},
	{"SendSerial transport/raw", "BenchmarkSendSerial/transport/%s", "BenchmarkSendSerial/raw/%s"},
	{"Send64 bus/rawbus (target >= 0.95)", "BenchmarkSend64/bus/%s", "BenchmarkSend64/rawbus/%s"},
	{"Send64 transport/raw", "BenchmarkSend64/transport/%s", "BenchmarkSend64/raw/%s"},
	{"SendAsync async1/send64 (one poster vs 64 senders, window 64)", "BenchmarkSendAsync/async1/%s", "BenchmarkSendAsync/send64/%s"},
	{"Defer64/Send64 bus (target >= 0.9)", "BenchmarkDefer64/bus/%s", "BenchmarkSend64/bus/%s"},
	{"Defer64/Send64 transport", "BenchmarkDefer64/transport/%s", "BenchmarkSend64/transport/%s"},
	{"Defer64/Send64 rawbus (the bus's messages, raw's way)", "BenchmarkDefer64/rawbus/%s", "BenchmarkSend64/rawbus/%s"},
	{"Defer64/Send64 raw", "BenchmarkDefer64/raw/%s", "BenchmarkSend64/raw/%s"},
	{"Defer64 bus/rawbus", "BenchmarkDefer64/bus/%s", "BenchmarkDefer64/rawbus/%s"},
	{"Defer64 raw-topic/raw (through the level's exchange)", "BenchmarkDefer64/raw-topic/%s", "BenchmarkDefer64/raw/%s"},
	{"Consume bus/raw (coalesced acks; target >= 1.2)", "BenchmarkConsume/bus/%s", "BenchmarkConsume/raw/%s"},
	{"Consume bus/rawbus", "BenchmarkConsume/bus/%s", "BenchmarkConsume/rawbus/%s"},
	{"Consume transport/raw", "BenchmarkConsume/transport/%s", "BenchmarkConsume/raw/%s"},
}

// WatermillPairs are the ratios the nested module bench prints.
var WatermillPairs = []Pair{
	{"SendSerial bus/watermill-amqp-v3 (target >= 1.0)", "BenchmarkSendSerial/bus/%s", "BenchmarkSendSerial/watermill/%s"},
	{"SendSerial bus/watermill-busheaders (the same headers)", "BenchmarkSendSerial/bus/%s", "BenchmarkSendSerial/watermill-busheaders/%s"},
	{"Send64 bus/watermill-amqp-v3 (target >= 1.5)", "BenchmarkSend64/bus/%s", "BenchmarkSend64/watermill/%s"},
	{"Send64 bus/watermill-busheaders (the same headers)", "BenchmarkSend64/bus/%s", "BenchmarkSend64/watermill-busheaders/%s"},
	{"Consume bus/watermill-amqp-v3 (target >= 1.0)", "BenchmarkConsume/bus/%s", "BenchmarkConsume/watermill/%s"},
}
