package memory_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// wait bounds every wait of a test that does not run in a synctest bubble.
const wait = 10 * time.Second

func newTransport(t *testing.T, opts memory.Options) *memory.Transport {
	t.Helper()
	tr := memory.New(opts)
	t.Cleanup(func() { tr.Close() })
	return tr
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

func declare(t *testing.T, tr transport.Transport, queue string, topics ...string) {
	t.Helper()
	if err := tr.Declare(ctxT(t), transport.Topology{Queue: transport.Queue{Name: queue}, Topics: topics}); err != nil {
		t.Fatalf("declare %s: %v", queue, err)
	}
}

func send(t *testing.T, tr transport.Transport, queue string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		err := tr.Dispatch(ctxT(t), transport.Outgoing{RoutingKey: queue, Mandatory: true,
			Message: transport.Message{ID: id, Body: []byte("body " + id)}})
		if err != nil {
			t.Fatalf("dispatch %s to %s: %v", id, queue, err)
		}
	}
}

// collector is a handler that hands every delivery to the test unsettled.
type collector chan *transport.Delivery

func newCollector() collector { return make(collector, 1000) }

func (c collector) handle(_ context.Context, d *transport.Delivery) { c <- d }

func (c collector) next(t *testing.T) *transport.Delivery {
	t.Helper()
	select {
	case d := <-c:
		return d
	case <-time.After(wait):
		t.Fatal("no delivery")
		return nil
	}
}

func ids(ds ...*transport.Delivery) string {
	s := ""
	for _, d := range ds {
		s += d.ID
		if d.Redelivered {
			s += "*"
		}
		s += " "
	}
	return s
}

func mustIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want one wrapping %v", err, target)
	}
}

func consume(t *testing.T, tr transport.Transport, queue string, opts transport.ConsumeOptions, h transport.Handler) transport.Consumer {
	t.Helper()
	c, err := tr.Consume(ctxT(t), queue, opts, h)
	if err != nil {
		t.Fatalf("consume %s: %v", queue, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// drain returns what c holds once every handler has run (in a bubble).
func (c collector) drain() []*transport.Delivery {
	synctest.Wait()
	var ds []*transport.Delivery
	for {
		select {
		case d := <-c:
			ds = append(ds, d)
		default:
			return ds
		}
	}
}

func msgIDs(ms []transport.Message) string {
	s := ""
	for _, m := range ms {
		s += fmt.Sprint(m.ID, " ")
	}
	return s
}
