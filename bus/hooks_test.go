package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

type hookKey struct{}

// hookLog records what the hooks of one Bus saw, in order.
type hookLog struct {
	mu  sync.Mutex
	got []string
}

func (l *hookLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, fmt.Sprintf(format, args...))
}

func (l *hookLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

// recordingHooks returns an Instrument that logs every hook call to l. Send
// stamps a header and puts a value in the context, which Sent, the batch's
// dispatch and the dispatcher must see.
func recordingHooks(l *hookLog) func(*bus.Bus, transport.Transport) (bus.Hooks, error) {
	return func(b *bus.Bus, t transport.Transport) (bus.Hooks, error) {
		name := b.Queue()
		return bus.Hooks{
			Send: func(ctx context.Context, s bus.Sending) context.Context {
				s.Message.Message.Headers["hooked"] = s.Operation
				return context.WithValue(ctx, hookKey{}, s.Message.Message.ID)
			},
			Sent: func(ctx context.Context, s bus.Sending, err error) {
				if errors.Is(err, transport.ErrUnroutable) {
					err = transport.ErrUnroutable
				}
				l.add("%s: sent %s %s held=%v ctx=%v err=%v", name, s.Operation, s.Message.RoutingKey, s.Held, ctx.Value(hookKey{}) == s.Message.Message.ID, err)
			},
			Dispatch: func(next middleware.Dispatcher) middleware.Dispatcher {
				return func(ctx context.Context, msgs ...transport.Outgoing) error {
					var keys []string
					for _, m := range msgs {
						keys = append(keys, m.RoutingKey+"/"+m.Message.Headers["hooked"].(string))
					}
					err := next(ctx, msgs...)
					l.add("%s: batch %v err=%v", name, keys, err)
					return err
				}
			},
			Handle: func(ctx context.Context, d *transport.Delivery, m *middleware.Message, next middleware.Handler) error {
				l.add("%s: handle %s from %s", name, m.Type, d.Queue)
				err := next(context.WithValue(ctx, hookKey{}, "handling"), m)
				l.add("%s: handled %s err=%v", name, m.Type, err)
				return err
			},
			Retry: func(ctx context.Context, f middleware.Failure) {
				l.add("%s: retry %d ctx=%v: %v", name, f.Retries, ctx.Value(hookKey{}), f.Err)
			},
			Forward: func(ctx context.Context, f middleware.Failure) {
				l.add("%s: forward to %s ctx=%v: %v", name, f.Queue, ctx.Value(hookKey{}), f.Err)
			},
			Event: func(e bus.Notice) {
				if e.Kind == bus.Started || e.Kind == bus.Stopped {
					l.add("%s: event %v", name, e.Kind)
				}
			},
		}, nil
	}
}

func TestHooksSeeSendsBatchesHandlingsAndFailures(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var l hookLog
		opts := bus.Options{Instrument: recordingHooks(&l), Retry: middleware.RetryOptions{MaxRetries: middleware.Retries(1)}}
		orders := e.bus("orders", opts)
		billing := e.bus("billing", bus.Options{Subscriptions: []string{"orders.*"}})
		var placed recorder[OrderPlaced]
		must(t, bus.Handle(billing, placed.handle))
		failures := 0
		must(t, bus.Handle(orders, func(ctx context.Context, o PlaceOrder) error {
			if o.ID == "bad" {
				failures++
				return errors.New("no stock")
			}
			if err := orders.Publish(ctx, "orders.placed", OrderPlaced{ID: o.ID}); err != nil {
				return err
			}
			return orders.Reply(ctx, OrderPlaced{ID: o.ID})
		}))
		e.start(orders)
		e.start(billing)
		client := e.bus("client", bus.Options{})
		var replies recorder[OrderPlaced]
		must(t, bus.Handle(client, replies.handle))
		e.start(client)

		must(t, client.Send(ctx, "orders", PlaceOrder{ID: "1"}))
		idle()
		must(t, client.Send(ctx, "orders", PlaceOrder{ID: "bad"}))
		idle()
		time.Sleep(time.Minute) // the bubble's clock: the delayed retry comes due
		idle()
		must(t, orders.Close())

		want := []string{
			"orders: event started",
			"orders: handle PlaceOrder from orders",
			"orders: sent publish orders.placed held=true ctx=true err=<nil>",
			"orders: sent reply client held=true ctx=true err=<nil>",
			"orders: batch [orders.placed/publish client/reply] err=<nil>",
			"orders: handled PlaceOrder err=<nil>",
			"orders: handle PlaceOrder from orders",
			"orders: retry 1 ctx=handling: no stock",
			"orders: handled PlaceOrder err=<nil>",
			"orders: handle PlaceOrder from orders",
			"orders: forward to error ctx=handling: no stock (gave up after 1 delayed retries)",
			"orders: handled PlaceOrder err=<nil>",
			"orders: event stopped",
		}
		if got := l.lines(); !slices.Equal(got, want) {
			t.Errorf("hooks saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if got := placed.all(); len(got) != 1 || placed.incoming()[0].Message.Headers["hooked"] != "publish" {
			t.Errorf("billing got %v, %v: want the event with the header the Send hook added", got, placed.incoming())
		}
		if got := replies.all(); len(got) != 1 {
			t.Errorf("client got replies %v, want 1", got)
		}
		if failures != 2 {
			t.Errorf("the failing handler ran %d times, want 2", failures)
		}
	})
}

func TestHooksSeeImmediateSendsAndTransactions(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var l hookLog
		client := e.bus("", bus.Options{Instrument: recordingHooks(&l)})
		must(t, client.Publish(ctx, "nobody.listens", OrderPlaced{}))
		err := client.Send(ctx, "missing", PlaceOrder{})
		if !errors.Is(err, bus.ErrUnroutable) {
			t.Fatalf("Send to a missing queue: %v, want ErrUnroutable", err)
		}
		must(t, client.Transaction(ctx, func(ctx context.Context) error {
			return client.Publish(ctx, "nobody.listens", OrderPlaced{})
		}))
		want := []string{
			": sent publish nobody.listens held=false ctx=true err=<nil>",
			": sent send missing held=false ctx=true err=" + transport.ErrUnroutable.Error(),
			": sent publish nobody.listens held=true ctx=true err=<nil>",
			": batch [nobody.listens/publish] err=<nil>",
		}
		got := l.lines()
		if !slices.Equal(got, want) {
			t.Errorf("hooks saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

// logWrap marks the records that passed through it.
type logWrap struct{ slog.Handler }

func (h logWrap) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(slog.Bool("wrapped", true))
	return h.Handler.Handle(ctx, r)
}

func TestHooksLogWrapsTheLogger(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var buf strings.Builder
		var mu sync.Mutex
		logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, nil))
		b := e.bus("orders", bus.Options{Logger: logger, Instrument: func(*bus.Bus, transport.Transport) (bus.Hooks, error) {
			return bus.Hooks{Log: func(h slog.Handler) slog.Handler { return logWrap{h} }}, nil
		}})
		must(t, bus.Handle(b, func(ctx context.Context, o PlaceOrder) error { return middleware.Permanent(errors.New("refused")) }))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{}))
		idle()
		must(t, b.Close())
		mu.Lock()
		defer mu.Unlock()
		for _, want := range []string{"endpoint started", "forwarded", "endpoint stopped"} {
			found := false
			for line := range strings.Lines(buf.String()) {
				if strings.Contains(line, want) {
					found = true
					if !strings.Contains(line, "wrapped=true") {
						t.Errorf("record %q did not pass the Log hook's handler", line)
					}
				}
			}
			if !found {
				t.Errorf("no record %q in\n%s", want, buf.String())
			}
		}
	})
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func TestInstrumentErrorFailsNew(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		_, err := bus.New(e.tr, "orders", bus.Options{Instrument: func(*bus.Bus, transport.Transport) (bus.Hooks, error) {
			return bus.Hooks{}, errors.New("no meter")
		}})
		if err == nil || !strings.Contains(err.Error(), "Instrument: no meter") {
			t.Errorf("New: %v, want the Instrument error", err)
		}
	})
}

func TestHooksSeeRepliesArrive(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var l hookLog
		server := e.bus("server", bus.Options{})
		must(t, bus.Handle(server, func(ctx context.Context, p Ping) error { return server.Reply(ctx, Pong(p)) }))
		e.start(server)
		client := e.bus("", bus.Options{Instrument: recordingHooks(&l)})
		pong, err := bus.Request[Pong](after(t, time.Minute), client, "server", Ping{N: 7})
		if err != nil || pong.N != 7 {
			t.Fatalf("Request = %v, %v", pong, err)
		}
		// Request returns once the reply is handed over, which may be
		// before the Handle hook that wraps its arrival has returned.
		idle()
		got := l.lines()
		// The Send hook of the request may record its line after the
		// reply arrived: only the reply's two lines are in order.
		sent := slices.Index(got, ": sent request server held=false ctx=true err=<nil>")
		handled := slices.Index(got, ": handled Pong err=<nil>")
		handle := slices.IndexFunc(got, func(s string) bool { return strings.HasPrefix(s, ": handle Pong from busline.reply-") })
		if len(got) != 3 || sent < 0 || handle < 0 || handled != handle+1 {
			t.Errorf("hooks saw\n%s\nwant the request sent, and its reply handed over within Handle", strings.Join(got, "\n"))
		}
	})
}
