package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// TestMeasureFailurePath measures, in real time (it is a measurement, not a
// test: the tests are TestFailurePathBounded and the bus package's), how often a message whose
// failure cannot be forwarded is delivered (issue 9 §1), and how long a
// Shutdown with a 2 s deadline takes while a handler ignores its context
// (§3). It prints figures and asserts nothing: run it with
//
//	BUSLINE_MEASURE=1 go test -count=1 -run TestMeasureFailurePath -v ./amqp
//
// (with BUSLINE_AMQP_URL set for the RabbitMQ rows).
func TestMeasureFailurePath(t *testing.T) {
	if os.Getenv("BUSLINE_MEASURE") == "" {
		t.Skip("a measurement: set BUSLINE_MEASURE=1")
	}
	const window = 3 * time.Second
	type setup struct {
		name string
		tr   func(t *testing.T) (transport.Transport, func(queue string, m transport.Message) error, func(q string) error, func())
	}
	mem := func(t *testing.T) (transport.Transport, func(string, transport.Message) error, func(string) error, func()) {
		br := memory.NewBroker()
		t.Cleanup(func() { br.Close() })
		tr := memory.New(memory.Options{Broker: br})
		t.Cleanup(func() { tr.Close() })
		refuse := func() { br.FailDispatches(1<<30, nil) }
		return tr, br.Inject, br.DeleteQueue, refuse
	}
	rabbit := func(t *testing.T) (transport.Transport, func(string, transport.Message) error, func(string) error, func()) {
		url := brokertest.URL(t)
		tr := dial(t, amqp.Options{})
		inject := func(q string, m transport.Message) error {
			conn, err := amqp091.Dial(url)
			if err != nil {
				return err
			}
			defer conn.Close()
			ch, err := conn.Channel()
			if err != nil {
				return err
			}
			h := amqp091.Table{}
			for k, v := range m.Headers {
				if t, ok := v.(map[string]any); ok {
					v = amqp091.Table(t)
				}
				h[k] = v
			}
			return ch.PublishWithContext(context.Background(), "", q, true, false, amqp091.Publishing{
				MessageId: m.ID, Type: m.Type, Headers: h, Body: m.Body, DeliveryMode: 2,
			})
		}
		del := func(q string) error { return tr.DeleteQueue(context.Background(), q) }
		refuse := func() { brokertest.Control(t, "ctl", "set_vm_memory_high_watermark", "0.0000001") }
		return tr, inject, del, refuse
	}
	for _, s := range []setup{{"memory", mem}, {"rabbitmq", rabbit}} {
		t.Run(s.name, func(t *testing.T) {
			if s.name == "rabbitmq" && os.Getenv("BUSLINE_AMQP_URL") == "" {
				t.Skip("no BUSLINE_AMQP_URL")
			}
			loop := func(t *testing.T, queue string, fail error, before func(b *bus.Bus, tr transport.Transport, inject func(string, transport.Message) error, del func(string) error, refuse func()) error) {
				tr, inject, del, refuse := s.tr(t)
				var n atomic.Int64
				queue = fmt.Sprintf("m%06d-", time.Now().UnixNano()%1e6) + queue
				if len(queue) > 230 {
					queue = queue[:230]
				}
				b, err := bus.New(tr, queue, bus.Options{})
				if err != nil {
					t.Logf("%s: bus.New: %v", t.Name(), err)
					return
				}
				defer b.Close()
				_ = b.HandleRaw("Fail", func(ctx context.Context, m *transport.Message) error {
					n.Add(1)
					return fail
				})
				if err := b.Start(context.Background()); err != nil {
					t.Logf("%s: Start: %v", t.Name(), err)
					return
				}
				if err := before(b, tr, inject, del, refuse); err != nil {
					t.Logf("%s: cannot set up the case: %v", t.Name(), err)
					return
				}
				time.Sleep(window)
				got := n.Load()
				t.Logf("RESULT %s/%s: %d deliveries in %v = %.1f per second", s.name, t.Name(), got, window, float64(got)/window.Seconds())
				_ = b.Close()
				if d, ok := tr.(transport.QueueDeleter); ok {
					_ = d.DeleteQueue(context.Background(), b.Queue())
					_ = d.DeleteQueue(context.Background(), b.ErrorQueue())
				}
			}
			perm := middleware.Permanent(errors.New("permanent failure"))
			t.Run("InvalidUTF8Key", func(t *testing.T) {
				loop(t, "badkey", perm, func(b *bus.Bus, tr transport.Transport, inject func(string, transport.Message) error, del func(string) error, refuse func()) error {
					return inject(b.Queue(), transport.Message{ID: "m1", Type: "Fail", Body: []byte("{}"),
						Headers: transport.Headers{"x-\xff-key": "v", "t": map[string]any{"x-\xfe-inner": int32(1)}}})
				})
			})
			t.Run("LongQueueName", func(t *testing.T) {
				loop(t, strings.Repeat("q", 230), errors.New("transient failure"), func(b *bus.Bus, tr transport.Transport, inject func(string, transport.Message) error, del func(string) error, refuse func()) error {
					return b.Send(context.Background(), b.Queue(), map[string]string{}, bus.WithMessageType("Fail"))
				})
			})
			t.Run("ErrorQueueDeleted", func(t *testing.T) {
				loop(t, "noerrq", perm, func(b *bus.Bus, tr transport.Transport, inject func(string, transport.Message) error, del func(string) error, refuse func()) error {
					if err := del(b.ErrorQueue()); err != nil {
						return err
					}
					return b.Send(context.Background(), b.Queue(), map[string]string{}, bus.WithMessageType("Fail"))
				})
			})
			t.Run("BrokerRefuses", func(t *testing.T) {
				loop(t, "refused", errors.New("transient failure"), func(b *bus.Bus, tr transport.Transport, inject func(string, transport.Message) error, del func(string) error, refuse func()) error {
					if refuse == nil {
						return errors.New("no way to make this broker refuse publishes here")
					}
					if err := b.Send(context.Background(), b.Queue(), map[string]string{}, bus.WithMessageType("Fail")); err != nil {
						return err
					}
					time.Sleep(50 * time.Millisecond)
					refuse()
					return nil
				})
			})
			t.Run("Shutdown", func(t *testing.T) {
				tr, _, _, _ := s.tr(t)
				b, err := bus.New(tr, fmt.Sprintf("m%06d-stubborn", time.Now().UnixNano()%1e6), bus.Options{HandlerTimeout: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				release := make(chan struct{})
				defer close(release)
				started := make(chan struct{}, 1)
				_ = b.HandleRaw("Slow", func(ctx context.Context, m *transport.Message) error {
					started <- struct{}{}
					select { // ignores ctx
					case <-release:
					case <-time.After(12 * time.Second):
					}
					return nil
				})
				if err := b.Start(context.Background()); err != nil {
					t.Fatal(err)
				}
				if err := b.Send(context.Background(), b.Queue(), map[string]string{}, bus.WithMessageType("Slow")); err != nil {
					t.Fatal(err)
				}
				<-started
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				t0 := time.Now()
				err = b.Shutdown(ctx)
				t.Logf("RESULT %s/Shutdown(2s deadline): returned after %v: %v", s.name, time.Since(t0).Round(10*time.Millisecond), err)
				t1 := time.Now()
				_ = b.Close()
				t.Logf("RESULT %s/Close after it: %v", s.name, time.Since(t1).Round(10*time.Millisecond))
				if d, ok := tr.(transport.QueueDeleter); ok {
					_ = d.DeleteQueue(context.Background(), b.Queue())
				}
			})
		})
	}
}
