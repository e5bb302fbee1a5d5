package middleware_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// failed is message id as the ErrorQueue stage leaves it on the error queue
// after failing in source.
func failed(id, source string) transport.Message {
	m := order(id)
	m.Headers[names.ErrorRetries] = int32(6)
	m.Headers[names.DeferredTime] = "2026-01-01T00:00:00.000000Z"
	m.Headers[names.ErrorDetails] = "boom"
	if source != "" {
		m.Headers[names.SourceQueue] = source
	}
	return m
}

func ids(ms []transport.Message) []string {
	var s []string
	for _, m := range ms {
		s = append(s, m.ID)
	}
	return s
}

func replayed(rs []middleware.ReplayedMessage) []string {
	var s []string
	for _, r := range rs {
		s = append(s, r.ID+"→"+r.SourceQueue)
	}
	return s
}

func TestReplay(t *testing.T) {
	for name, wrap := range map[string]func(*broker) middleware.Sender{
		"Getter":           func(b *broker) middleware.Sender { return getting{b} },
		"Getter+Inspector": func(b *broker) middleware.Sender { return full{b} },
	} {
		t.Run(name, func(t *testing.T) {
			b := newBroker("orders", "billing", "error")
			b.put("error", failed("a", "orders"))
			b.put("error", failed("b", "billing"))
			b.put("error", failed("c", ""))
			b.put("error", failed("d", "orders"))
			nonString := failed("e", "")
			nonString.Headers[names.SourceQueue] = int32(1)
			b.put("error", nonString)
			b.put("error", failed("f", "error"))
			b.put("error", failed("g", "gone"))

			res, err := middleware.Replay(t.Context(), wrap(b), middleware.ReplayOptions{SourceQueues: []string{"orders"}})
			if err != nil {
				t.Fatal(err)
			}
			if got := replayed(res.Replayed); !reflect.DeepEqual(got, []string{"a→orders", "d→orders"}) || res.Skipped != 5 || len(res.Left) != 0 {
				t.Fatalf("replay orders: %+v", res)
			}
			if got := ids(b.messages("error")); !reflect.DeepEqual(got, []string{"b", "c", "e", "f", "g"}) {
				t.Fatalf("error queue after replay: %v", got)
			}
			back := b.messages("orders")
			if !reflect.DeepEqual(ids(back), []string{"a", "d"}) {
				t.Fatalf("orders: %v", ids(back))
			}
			want := order("a")
			if !reflect.DeepEqual(back[0].Headers, mustNormalize(t, want.Headers)) || string(back[0].Body) != string(want.Body) ||
				back[0].CorrelationID != want.CorrelationID || back[0].Type != want.Type {
				t.Fatalf("replayed message: %+v\nwant %+v", back[0], want)
			}

			// Everything else: b goes back; c, e, f have no usable source; g's is gone.
			res, err = middleware.Replay(t.Context(), wrap(b), middleware.ReplayOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := replayed(res.Replayed); !reflect.DeepEqual(got, []string{"b→billing"}) || res.Skipped != 0 {
				t.Fatalf("replay all: %+v", res)
			}
			if len(res.Left) != 4 {
				t.Fatalf("left %+v, want 4", res.Left)
			}
			for _, l := range res.Left[:3] {
				if !errors.Is(l.Reason, middleware.ErrNoSourceQueue) {
					t.Errorf("%s left for %v, want ErrNoSourceQueue", l.ID, l.Reason)
				}
			}
			if l := res.Left[3]; l.ID != "g" || l.SourceQueue != "gone" || !errors.Is(l.Reason, transport.ErrUnroutable) {
				t.Errorf("g left as %+v, want ErrUnroutable", l)
			}
			if got := ids(b.messages("error")); !reflect.DeepEqual(got, []string{"c", "e", "f", "g"}) {
				t.Fatalf("error queue: %v, want the unreplayable messages in their order", got)
			}
		})
	}
}

func mustNormalize(t *testing.T, h transport.Headers) transport.Headers {
	t.Helper()
	n, err := h.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestReplaySelection(t *testing.T) {
	b := newBroker("orders", "error")
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		b.put("error", failed(id, "orders"))
	}
	res, err := middleware.Replay(t.Context(), full{b}, middleware.ReplayOptions{MessageIDs: []string{"d", "b", "zz"}})
	if !errors.Is(err, transport.ErrNotFound) || !strings.Contains(err.Error(), `"zz"`) ||
		!reflect.DeepEqual(replayed(res.Replayed), []string{"b→orders", "d→orders"}) || res.Skipped != 3 ||
		!reflect.DeepEqual(res.NotFound, []string{"zz"}) {
		t.Fatalf("by id: %+v, %v", res, err)
	}
	res, err = middleware.Replay(t.Context(), full{b}, middleware.ReplayOptions{Max: 2})
	if err != nil || !reflect.DeepEqual(replayed(res.Replayed), []string{"a→orders", "c→orders"}) {
		t.Fatalf("max 2: %+v, %v", res, err)
	}
	if got := ids(b.messages("error")); !reflect.DeepEqual(got, []string{"e"}) {
		t.Fatalf("error queue: %v", got)
	}
	// An id found only in the MessageId header.
	m := failed("", "orders")
	m.Headers[names.MessageID] = "h1"
	b.put("error", m)
	res, err = middleware.Replay(t.Context(), full{b}, middleware.ReplayOptions{MessageIDs: []string{"h1"}})
	if err != nil || !reflect.DeepEqual(replayed(res.Replayed), []string{"h1→orders"}) {
		t.Fatalf("by header id: %+v, %v", res, err)
	}
	if _, err := middleware.Replay(t.Context(), full{b}, middleware.ReplayOptions{Queue: "nope"}); !errors.Is(err, transport.ErrNotFound) {
		t.Fatalf("missing error queue: %v", err)
	}
}

// A replayed message that fails again at once comes back to the error queue
// while Replay runs; Replay must not replay it again, and says so.
func TestReplayLooksOnce(t *testing.T) {
	for name, wrap := range map[string]func(*broker) middleware.Sender{
		"Getter":           func(b *broker) middleware.Sender { return getting{b} },
		"Getter+Inspector": func(b *broker) middleware.Sender { return full{b} },
	} {
		t.Run(name, func(t *testing.T) {
			b := newBroker("orders", "error")
			b.put("error", failed("a", "orders"))
			b.put("error", failed("b", "orders"))
			b.onDispatch = func(b *broker, o transport.Outgoing) {
				if o.RoutingKey == "orders" {
					b.put("error", failed(o.Message.ID, "orders"))
				}
			}
			res, err := middleware.Replay(t.Context(), wrap(b), middleware.ReplayOptions{})
			if err != nil || !reflect.DeepEqual(replayed(res.Replayed), []string{"a→orders", "b→orders"}) {
				t.Fatalf("%+v, %v", res, err)
			}
			if len(res.Left) != 2 || !errors.Is(res.Left[0].Reason, middleware.ErrAlreadyReplayed) || res.Left[0].ID != "a" {
				t.Errorf("left %+v, want a and b as already replayed", res.Left)
			}
			if got := ids(b.messages("error")); !reflect.DeepEqual(got, []string{"a", "b"}) {
				t.Fatalf("error queue: %v", got)
			}
		})
	}
}

func TestReplayDispatchedBeforeAcked(t *testing.T) {
	b := newBroker("orders", "error")
	b.put("error", failed("a", "orders"))
	b.fail = func(ctx context.Context, o transport.Outgoing) error {
		if got := ids(b.messages("error")); !reflect.DeepEqual(got, []string{"a"}) {
			t.Errorf("error queue %v while dispatching; want the message still there", got)
		}
		return nil
	}
	if res, err := middleware.Replay(t.Context(), full{b}, middleware.ReplayOptions{}); err != nil || len(res.Replayed) != 1 {
		t.Fatalf("%+v, %v", res, err)
	}
	if len(b.messages("error")) != 0 {
		t.Fatal("acked message still on the error queue")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b.put("error", failed("b", "orders"))
	if _, err := middleware.Replay(ctx, getting{b}, middleware.ReplayOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if got := ids(b.messages("error")); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("error queue after a cancelled replay: %v", got)
	}
}

// Two copies of one message (at-least-once delivery makes them): the first
// is replayed, the second left, and Replay goes on to the rest of the
// queue.
func TestReplayDuplicates(t *testing.T) {
	b := newBroker("orders", "error")
	b.put("error", failed("a", "orders"))
	b.put("error", failed("a", "orders"))
	b.put("error", failed("b", "orders"))
	res, err := middleware.Replay(t.Context(), getting{b}, middleware.ReplayOptions{})
	if err != nil || !reflect.DeepEqual(replayed(res.Replayed), []string{"a→orders", "b→orders"}) ||
		len(res.Left) != 1 || !errors.Is(res.Left[0].Reason, middleware.ErrAlreadyReplayed) {
		t.Fatalf("%+v, %v", res, err)
	}
	if got := ids(b.messages("error")); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("error queue: %v", got)
	}
}

// A message without an id that fails again at once is recognized by its
// body: Replay ends.
func TestReplayWithoutIDsEnds(t *testing.T) {
	b := newBroker("orders", "error")
	m := failed("", "orders")
	delete(m.Headers, names.MessageID)
	b.put("error", m)
	b.onDispatch = func(b *broker, o transport.Outgoing) {
		if o.RoutingKey == "orders" {
			b.put("error", m)
		}
	}
	res, err := middleware.Replay(t.Context(), getting{b}, middleware.ReplayOptions{})
	if err != nil || len(res.Replayed) != 1 || len(res.Left) != 1 {
		t.Fatalf("%+v, %v", res, err)
	}
}

// Ids asked for and not on the queue are reported, and make an error;
// those found are replayed all the same.
func TestReplayNotFound(t *testing.T) {
	b := newBroker("orders", "error")
	b.put("error", failed("a", "orders"))
	b.put("error", failed("b", "elsewhere"))
	res, err := middleware.Replay(t.Context(), getting{b}, middleware.ReplayOptions{
		MessageIDs: []string{"x", "a", "b", "y", "x"}, SourceQueues: []string{"orders"},
	})
	// b is there but not selected by SourceQueues: found, skipped.
	if !errors.Is(err, transport.ErrNotFound) || !reflect.DeepEqual(res.NotFound, []string{"x", "y"}) ||
		!reflect.DeepEqual(replayed(res.Replayed), []string{"a→orders"}) || res.Skipped != 1 {
		t.Fatalf("%+v, %v", res, err)
	}
	if !strings.Contains(err.Error(), `["x" "y"]`) {
		t.Errorf("error %q does not name the ids", err)
	}
	// Nothing asked for, nothing missing.
	if res, err := middleware.Replay(t.Context(), getting{b}, middleware.ReplayOptions{}); err != nil || res.NotFound != nil {
		t.Fatalf("%+v, %v", res, err)
	}
	// a was replayed: it is not there any more.
	res, err = middleware.Replay(t.Context(), getting{b}, middleware.ReplayOptions{MessageIDs: []string{"a"}})
	if !errors.Is(err, transport.ErrNotFound) || !reflect.DeepEqual(res.NotFound, []string{"a"}) {
		t.Fatalf("%+v, %v", res, err)
	}
}

// TestReplayDeadLettered: a message the broker dead-lettered to the error
// queue (over its queue's delivery limit) has no SourceQueue header; Replay
// sends it back to the queue of the newest x-death entry, not to
// x-first-death-queue, which names a delay level when the message was a
// retry copy, and without the dead-lettering headers.
func TestReplayDeadLettered(t *testing.T) {
	b := newBroker("payments", "error")
	m := order("dl")
	m.Headers["x-death"] = []any{
		map[string]any{"queue": "payments", "reason": "delivery_limit", "count": int64(1)},
		map[string]any{"queue": "busline-delay-01", "reason": "expired", "count": int64(1)},
	}
	m.Headers["x-first-death-queue"] = "busline-delay-01"
	m.Headers["x-first-death-reason"] = "expired"
	m.Headers["x-first-death-exchange"] = "busline-delay-01"
	b.put("error", m)
	res, err := middleware.Replay(t.Context(), getting{b}, middleware.ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := replayed(res.Replayed); !reflect.DeepEqual(got, []string{"dl→payments"}) {
		t.Fatalf("replay: %+v", res)
	}
	back := b.messages("payments")
	if len(back) != 1 {
		t.Fatalf("payments holds %d messages, want 1", len(back))
	}
	for k := range back[0].Headers {
		if k == "x-death" || strings.HasPrefix(k, "x-first-death-") {
			t.Errorf("the replayed message keeps header %q", k)
		}
	}
}
