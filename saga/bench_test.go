package saga_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/cputime"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/saga"
)

// plainRate is the msgs/s of BenchmarkSaga/plain in this run, the
// baseline of the others' ratio.
var plainRate float64

// BenchmarkSaga: messages per second handled by an endpoint on the memory
// broker, four at a time, each message one of ten for its instance:
//
//   - plain: a handler that does nothing (the baseline);
//   - memory: the saga with the in-memory store;
//   - sqlite, postgres: the saga with a SQL store (a find and a save per
//     message, autocommit);
//   - sqlite+outbox, postgres+outbox: the same under the outbox (inbox
//     record, find, save in one transaction).
//
// Each reports msgs/s, CPU time per message (the process's, which other
// processes on a shared machine do not inflate), the ratio of its msgs/s
// to plain's in the same run, and the 1-minute load average at its end.
func BenchmarkSaga(b *testing.B) {
	for _, mode := range []string{"plain", "memory", "sqlite", "postgres", "sqlite+outbox", "postgres+outbox"} {
		b.Run(mode, func(b *testing.B) { benchSaga(b, mode) })
	}
}

func benchSaga(b *testing.B, mode string) {
	br := memory.NewBroker()
	b.Cleanup(func() { br.Close() })
	var store saga.Store
	opts := bus.Options{Concurrency: 4, Retry: fastRetries, Logger: testLogger()}
	switch {
	case mode == "memory":
		store = saga.NewMemoryStore()
	case strings.HasPrefix(mode, "sqlite"):
		db := openSQLite(b)
		store = sqliteStore(b, db)
		if strings.HasSuffix(mode, "+outbox") {
			ob, err := newOutbox(db, "")
			must(b, err)
			opts.UnitOfWork = ob.UnitOfWork
		}
	case strings.HasPrefix(mode, "postgres"):
		db, schema := openPostgres(b)
		store = postgresStore(b, db, schema)
		if strings.HasSuffix(mode, "+outbox") {
			ob, err := newOutbox(db, schema)
			must(b, err)
			opts.UnitOfWork = ob.UnitOfWork
		}
	}
	var done atomic.Int64
	finished := make(chan struct{})
	target := int64(b.N)
	opts.Middleware = []middleware.Middleware{func(next middleware.Handler) middleware.Handler {
		return func(ctx context.Context, m *middleware.Message) error {
			err := next(ctx, m)
			if err == nil && done.Add(1) == target {
				close(finished)
			}
			return err
		}
	}}
	tr := memory.New(memory.Options{Broker: br, Name: "steps"})
	b.Cleanup(func() { tr.Close() })
	ep, err := bus.New(tr, "steps", opts)
	must(b, err)
	b.Cleanup(func() { ep.Close() })
	if store == nil {
		must(b, bus.Handle(ep, func(ctx context.Context, m Step) error { return nil }))
	} else {
		must(b, counterSaga().Register(ep, store))
	}
	client, err := bus.New(tr, "", bus.Options{Logger: testLogger()})
	must(b, err)
	b.Cleanup(func() { client.Close() })
	must(b, ep.Start(ctx))
	instances := max(1, b.N/10)
	cpu := cputime.Used()
	b.ResetTimer()
	for i := 0; i < b.N; i += 100 {
		must(b, client.Transaction(ctx, func(ctx context.Context) error {
			for j := i; j < min(i+100, b.N); j++ {
				if err := client.Send(ctx, "steps", Step{Key: strconv.Itoa(j % instances), N: j / instances % 10}); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	select {
	case <-finished:
	case <-time.After(5 * time.Minute):
		b.Fatalf("%d of %d messages handled after 5 minutes", done.Load(), b.N)
	}
	b.StopTimer()
	rate := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "msgs/s")
	b.ReportMetric(float64((cputime.Used()-cpu).Microseconds())/float64(b.N), "cpu-µs/msg")
	if mode == "plain" {
		plainRate = rate
	} else if plainRate > 0 {
		b.ReportMetric(rate/plainRate, "x-plain")
	}
	b.ReportMetric(loadAverage(), "load1")
}

// loadAverage is the 1-minute load average, 0 where it cannot be read.
func loadAverage() float64 {
	s, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	fmt.Sscan(string(s), &l)
	return l
}
