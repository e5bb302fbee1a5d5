package bus_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// Message types of the tests.
type (
	PlaceOrder  struct{ ID string }
	OrderPlaced struct{ ID string }
	Ping        struct{ N int }
	Pong        struct{ N int }
)

// env is a memory broker and a transport on it, created inside the
// synctest bubble of the test that uses it.
type env struct {
	t      *testing.T
	broker *memory.Broker
	tr     *memory.Transport
}

// bubble runs f in a synctest bubble with a fresh env.
func bubble(t *testing.T, f func(t *testing.T, e *env)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		f(t, newEnv(t))
	})
}

func newEnv(t *testing.T) *env {
	br := memory.NewBroker()
	t.Cleanup(func() { br.Close() })
	tr := memory.New(memory.Options{Broker: br, Name: "test"})
	t.Cleanup(func() { tr.Close() })
	return &env{t: t, broker: br, tr: tr}
}

// transport returns another connection to the env's broker.
func (e *env) transport(name string) *memory.Transport {
	tr := memory.New(memory.Options{Broker: e.broker, Name: name})
	e.t.Cleanup(func() { tr.Close() })
	return tr
}

// bus returns a Bus on the env's transport, closed when the test ends.
func (e *env) bus(queue string, opts bus.Options) *bus.Bus {
	e.t.Helper()
	return e.busOn(e.tr, queue, opts)
}

func (e *env) busOn(tr transport.Transport, queue string, opts bus.Options) *bus.Bus {
	e.t.Helper()
	b, err := bus.New(tr, queue, opts)
	if err != nil {
		e.t.Fatalf("bus.New(%q): %v", queue, err)
	}
	e.t.Cleanup(func() { b.Close() })
	return b
}

// start starts b or fails the test.
func (e *env) start(b *bus.Bus) {
	e.t.Helper()
	if err := b.Start(context.Background()); err != nil {
		e.t.Fatalf("Start: %v", err)
	}
}

// idle waits until every goroutine of the bubble is blocked: every message
// that can be handled now has been.
func idle() { synctest.Wait() }

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// recorder collects what handlers saw.
type recorder[T any] struct {
	mu  sync.Mutex
	got []T
	in  []bus.Incoming
}

func (r *recorder[T]) handle(ctx context.Context, m T) error {
	in, _ := bus.IncomingFrom(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, m)
	r.in = append(r.in, in)
	return nil
}

func (r *recorder[T]) all() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), r.got...)
}

func (r *recorder[T]) incoming() []bus.Incoming {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bus.Incoming(nil), r.in...)
}

// header returns a string header of m.
func header(m transport.Message, name string) string {
	s, _ := m.Headers["PikaBus."+name].(string)
	return s
}

var ctx = context.Background()

// after returns a context that ends d from now, on the bubble's clock.
func after(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}
