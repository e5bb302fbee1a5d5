// Command benchtable prints, from the record file of one or more runs of
// the RabbitMQ benchmarks (BUSLINE_BENCH_RECORD, see package benchkit), the
// medians as the markdown tables of the README's "RabbitMQ" section, and
// the ratios of the targets, with the load averages the runs saw.
// `make bench-rabbitmq` runs it after its rounds:
//
//	go run ./internal/benchkit/benchtable FILE
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/busline/busline/internal/benchkit"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtable RECORD-FILE")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

// set holds the metric values of one package's benchmarks, by benchmark
// and metric, of the runs with the largest N.
type set struct {
	byName map[string]map[string][]float64
	n      map[string]int
}

func run(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sets := map[string]*set{}
	var loads []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l benchkit.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		s := sets[l.Package]
		if s == nil {
			s = &set{byName: map[string]map[string][]float64{}, n: map[string]int{}}
			sets[l.Package] = s
		}
		switch n := s.n[l.Name]; {
		case l.N > n:
			s.n[l.Name] = l.N
			s.byName[l.Name] = map[string][]float64{}
			fallthrough
		case l.N == n:
			for k, v := range l.Metrics {
				s.byName[l.Name][k] = append(s.byName[l.Name][k], v)
			}
		}
		loads = append(loads, l.Load)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(loads) == 0 {
		return fmt.Errorf("%s: no records", path)
	}
	fmt.Printf("Load average (1, 5, 15 min) at the first record %s, at the last %s, now %s.\n\n", loads[0], loads[len(loads)-1], benchkit.LoadAvg())
	if s := sets["amqp"]; s != nil {
		printRabbitMQ(s)
		printLateness(s)
	}
	if s := sets["bench"]; s != nil {
		printWatermill(s)
	}
	fmt.Println("Where the CPU time goes: medians of CPU time per message, the client's (this process, amqp091-go included) and the RabbitMQ node's, and the cores each kept busy (msg/s × CPU time per message; the machine has", runtime.NumCPU(), "cores):")
	fmt.Println()
	fmt.Println("| pair | queue | msg/s ratio | client µs/msg | broker µs/msg | cores busy, client + broker |")
	fmt.Println("|---|---|---|---|---|---|")
	if s := sets["amqp"]; s != nil {
		printCPU(s, benchkit.AMQPPairs)
	}
	if s := sets["bench"]; s != nil {
		printCPU(s, benchkit.WatermillPairs)
	}
	fmt.Println()
	fmt.Println("Ratios of the medians (msg/s; client and broker CPU time per message in parentheses):")
	fmt.Println()
	fmt.Println("```text")
	if s := sets["amqp"]; s != nil {
		for _, l := range benchkit.Ratios(s.byName, benchkit.AMQPPairs, benchkit.QueueTypes...) {
			fmt.Println("amqp:  " + l)
		}
	}
	if s := sets["bench"]; s != nil {
		for _, l := range benchkit.Ratios(s.byName, benchkit.WatermillPairs, benchkit.QueueTypes...) {
			fmt.Println("bench: " + l)
		}
	}
	fmt.Println("```")
	return nil
}

// cell is the median msg/s of name, and its client CPU time per message in
// µs, or "" when it did not run.
func (s *set) cell(name string) string {
	m := s.byName[name]
	if len(m["msg/s"]) == 0 {
		return ""
	}
	c := group(benchkit.Median(m["msg/s"]))
	if cpu := m["client-cpu-ns/msg"]; len(cpu) > 0 {
		c += fmt.Sprintf(" (%.1f µs)", benchkit.Median(cpu)/1000)
	}
	if k := len(m["msg/s"]); k > 1 {
		c += fmt.Sprintf(" ×%d", k)
	}
	return c
}

func printRabbitMQ(s *set) {
	fmt.Println("| benchmark | queue | bus | rawbus | transport | raw |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, b := range []struct{ name, what string }{
		{"BenchmarkSendSerial", "one sender, waiting for each confirm"},
		{"BenchmarkSend64", "64 senders, 64 confirms in flight"},
		{"BenchmarkDefer64", "as Send64, deferred by an hour; raw: as the transport enters the levels"},
		{"BenchmarkConsume", "prefetch 100, an ack per message (coalesced by the transport)"},
	} {
		for i, typ := range benchkit.QueueTypes {
			label := ""
			if i == 0 {
				label = fmt.Sprintf("`amqp: %s` (%s)", b.name, b.what)
			}
			row := []string{label, typ}
			for _, col := range []string{"bus", "rawbus", "transport", "raw"} {
				row = append(row, s.cell(b.name+"/"+col+"/"+typ))
			}
			fmt.Println("| " + strings.Join(row, " | ") + " |")
		}
	}
	fmt.Println()
	fmt.Println("Cells: median msg/s (median client CPU time per message) ×rounds.")
	fmt.Println()
}

func printLateness(s *set) {
	var names []string
	for name := range s.byName {
		if strings.HasPrefix(name, "BenchmarkDeferLateness/") {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return
	}
	slices.Sort(names)
	fmt.Println("| `amqp: BenchmarkDeferLateness` column | p50 late | p99 late | max late | arrived at | rounds |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, name := range names {
		m := s.byName[name]
		ms := func(k string) string {
			if len(m[k]) == 0 {
				return ""
			}
			return fmt.Sprintf("%.2f s", benchkit.Median(m[k])/1000)
		}
		rate := ""
		if len(m["arrived-msg/s"]) > 0 {
			rate = group(benchkit.Median(m["arrived-msg/s"])) + " msg/s"
		}
		fmt.Printf("| `%s` | %s | %s | %s | %s | %d |\n", strings.TrimPrefix(name, "BenchmarkDeferLateness/"),
			ms("p50-late-ms"), ms("p99-late-ms"), ms("max-late-ms"), rate, len(m["p99-late-ms"]))
	}
	fmt.Println()
}

func printWatermill(s *set) {
	fmt.Println("| benchmark | queue | bus msg/s | watermill msg/s | bus/watermill | bus/watermill with the bus's headers | client CPU µs/msg, bus / watermill |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, b := range []struct{ name, what string }{
		{"BenchmarkSendSerial", "one sender"},
		{"BenchmarkSend64", "64 senders"},
		{"BenchmarkConsume", "prefetch 100"},
	} {
		for i, typ := range benchkit.QueueTypes {
			label := ""
			if i == 0 {
				label = fmt.Sprintf("`bench: %s` (%s)", b.name, b.what)
			}
			bm, wm := s.byName[b.name+"/bus/"+typ], s.byName[b.name+"/watermill/"+typ]
			if len(bm["msg/s"]) == 0 || len(wm["msg/s"]) == 0 {
				continue
			}
			br, wr := benchkit.Median(bm["msg/s"]), benchkit.Median(wm["msg/s"])
			cpu := ""
			if len(bm["client-cpu-ns/msg"]) > 0 && len(wm["client-cpu-ns/msg"]) > 0 {
				cpu = fmt.Sprintf("%.1f / %.1f", benchkit.Median(bm["client-cpu-ns/msg"])/1000, benchkit.Median(wm["client-cpu-ns/msg"])/1000)
			}
			same := ""
			if hm := s.byName[b.name+"/watermill-busheaders/"+typ]; len(hm["msg/s"]) > 0 {
				same = fmt.Sprintf("%.2f", br/benchkit.Median(hm["msg/s"]))
			}
			fmt.Printf("| %s | %s | %s | %s | %.2f | %s | %s |\n", label, typ, group(br), group(wr), br/wr, same, cpu)
		}
	}
	fmt.Println()
}

// group formats a rate as a whole number with thousands separators.
func group(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// printCPU prints a row of the CPU table for each pair and queue type whose
// two sides recorded msg/s and both CPU times: for a pair A/B, the ratio of
// their rates, then each figure as "A / B". A gap between two clients on a
// broker that both keep equally busy is the client's; one in the broker's
// CPU time per message is the cost to RabbitMQ of what the client sends
// (its headers, its channels, its pattern of writes).
func printCPU(s *set, pairs []benchkit.Pair) {
	for _, p := range pairs {
		for _, typ := range benchkit.QueueTypes {
			ra, ca, ba, okA := medians(s.byName[fmt.Sprintf(p.A, typ)])
			rb, cb, bb, okB := medians(s.byName[fmt.Sprintf(p.B, typ)])
			if !okA || !okB || rb == 0 {
				continue
			}
			cores := func(rate, ns float64) float64 { return rate * ns / 1e9 }
			fmt.Printf("| %s | %s | %.2f | %.1f / %.1f | %.1f / %.1f | %.2f + %.2f / %.2f + %.2f |\n",
				p.Label, typ, ra/rb, ca/1000, cb/1000, ba/1000, bb/1000,
				cores(ra, ca), cores(ra, ba), cores(rb, cb), cores(rb, bb))
		}
	}
}

// medians returns the median msg/s and client and broker CPU time per
// message of one benchmark's metrics, and whether it recorded all three.
func medians(m map[string][]float64) (rate, client, broker float64, ok bool) {
	for _, k := range []string{"msg/s", "client-cpu-ns/msg", "broker-cpu-ns/msg"} {
		if len(m[k]) == 0 {
			return 0, 0, 0, false
		}
	}
	return benchkit.Median(m["msg/s"]), benchkit.Median(m["client-cpu-ns/msg"]), benchkit.Median(m["broker-cpu-ns/msg"]), true
}
