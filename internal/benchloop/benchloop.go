// Package benchloop is the loop of the benchmarks that send b.N messages
// through an endpoint (the bus over the memory broker, or Watermill's
// router for comparison) with a bounded number in flight, and report the
// process's CPU time per message beside the wall time. It uses the
// standard library only, so that package bus's own tests can use it.
package benchloop

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/internal/cputime"
)

// Window bounds the messages sent and not yet handled. Make one per
// benchmark run; the handler under test calls Handled once per message.
type Window struct {
	slots   chan struct{}
	n       int64 // the messages Run sends; set before the first
	handled atomic.Int64
	done    chan struct{}
}

// New returns a Window of size messages.
func New(size int) *Window {
	return &Window{slots: make(chan struct{}, size), done: make(chan struct{})}
}

// Handled frees the slot of one message: the handler calls it for each.
func (w *Window) Handled() {
	<-w.slots
	if w.handled.Add(1) == w.n {
		close(w.done)
	}
}

// Run resets the timer, calls send b.N times, each once a slot is free,
// waits (a minute at most) until every message was handled, stops the
// timer and reports the process's CPU time per message, in every goroutine,
// garbage collection included (cpu-ns/op).
func (w *Window) Run(b *testing.B, send func() error) {
	w.n = int64(b.N)
	b.ResetTimer()
	cpu := cputime.Used()
	for range b.N {
		w.slots <- struct{}{}
		if err := send(); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-w.done:
	case <-time.After(time.Minute):
		b.Fatalf("handled %d of %d", w.handled.Load(), b.N)
	}
	b.StopTimer()
	if used := cputime.Used() - cpu; used > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
