package amqp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/transport"
)

func TestHeadersAndPropertiesRoundTrip(t *testing.T) {
	tr := dial(t, amqp.Options{})
	q := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: q})
	got := collect(t, tr, q, transport.ConsumeOptions{})

	ts := time.Date(2026, 11, 22, 10, 11, 12, 0, time.UTC)
	in := transport.Message{
		ID: "id-1", CorrelationID: "corr", ReplyTo: "replies", ContentType: "application/json",
		ContentEncoding: "utf-8", Type: "Orders.Placed", Timestamp: ts.Add(900 * time.Millisecond),
		Headers: transport.Headers{
			"str": "s", "bool": true, "nil": nil,
			"int": 42, "big": 1 << 40, "min": math.MinInt64, "uint64": uint64(math.MaxInt64),
			"i8": int8(-8), "u8": uint8(8), "i16": int16(-16), "u16": uint16(16),
			"i32": int32(-32), "u32": uint32(math.MaxUint32), "i64": int64(-64),
			"f32": float32(1.5), "f64": 2.25, "dec": transport.Decimal{Scale: 2, Value: 12345},
			"time": ts, "bytes": []byte{0, 1, 2},
			"table":  map[string]any{"n": 1, "deep": transport.Headers{"x": []any{"y", int64(7)}}},
			"arr":    []any{1, "two", []string{"a"}, map[string]any{"k": false}},
			"xdeath": []map[string]any{{"count": int64(1), "reason": "expired"}},
		},
		Body: []byte(`{"a":1}`),
	}
	want, err := in.Normalized()
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Dispatch(testCtx(t, 10*time.Second), transport.Outgoing{RoutingKey: q, Mandatory: true, Message: in}); err != nil {
		t.Fatal(err)
	}
	d := next(t, got, 10*time.Second)
	if !reflect.DeepEqual(d.Message, want) {
		t.Errorf("delivered message differs:\n got %#v\nwant %#v", d.Message, want)
	}
	if d.Queue != q || d.Exchange != transport.Direct || d.RoutingKey != q || d.Redelivered {
		t.Errorf("delivery: queue %q exchange %v key %q redelivered %v", d.Queue, d.Exchange, d.RoutingKey, d.Redelivered)
	}
}

// TestLargeIntegersNotTruncated guards against amqp091 writing a Go int as a
// 32-bit field.
func TestLargeIntegersNotTruncated(t *testing.T) {
	tr := dial(t, amqp.Options{})
	q := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: q, Type: transport.Classic})
	got := collect(t, tr, q, transport.ConsumeOptions{})
	big := 1<<31 + 5
	if err := tr.Dispatch(testCtx(t, 10*time.Second), transport.Outgoing{RoutingKey: q,
		Message: transport.Message{Headers: transport.Headers{"n": big, "arr": []any{big}}}}); err != nil {
		t.Fatal(err)
	}
	d := next(t, got, 10*time.Second)
	if d.Headers["n"] != int64(big) || d.Headers["arr"].([]any)[0] != int64(big) {
		t.Fatalf("headers %#v, want %d as int64", d.Headers, big)
	}
}

func TestDispatchUnroutable(t *testing.T) {
	tr := dial(t, amqp.Options{})
	q := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: q}, "known.#")
	got := collect(t, tr, q, transport.ConsumeOptions{Prefetch: 10})
	ctx := testCtx(t, 20*time.Second)

	// One message id for all: a return must be matched to its own publish,
	// not to another copy of the same message.
	msg := transport.Message{ID: "same"}
	batch := []transport.Outgoing{
		{RoutingKey: q, Mandatory: true, Message: msg},
		{RoutingKey: "amqp-test-no-such-queue", Mandatory: true, Message: msg},
		{RoutingKey: q, Mandatory: true, Message: msg},
		{Exchange: transport.Topic, RoutingKey: "unknown.topic", Mandatory: true, Message: msg},
		{Exchange: transport.Topic, RoutingKey: "known.topic", Mandatory: true, Message: msg},
		{RoutingKey: "amqp-test-no-such-queue", Message: msg}, // not mandatory: dropped silently
	}
	err := tr.Dispatch(ctx, batch...)
	if !errors.Is(err, transport.ErrUnroutable) {
		t.Fatalf("Dispatch = %v, want ErrUnroutable", err)
	}
	var failed []int
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var de *transport.DispatchError
		if !errors.As(e, &de) {
			t.Fatalf("error %v is not a DispatchError", e)
		}
		failed = append(failed, de.Index)
	}
	if !reflect.DeepEqual(failed, []int{1, 3}) {
		t.Fatalf("failed messages %v, want [1 3]; error: %v", failed, err)
	}
	for range 3 {
		d := next(t, got, 10*time.Second)
		if _, ok := d.Headers["x-busline-publish-seq"]; ok {
			t.Fatalf("transport-private header delivered: %#v", d.Headers)
		}
	}

	// Many concurrent mandatory publishes, half unroutable, all with one id.
	var wg sync.WaitGroup
	errs := make([]error, 200)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := q
			if i%2 == 1 {
				key = "amqp-test-no-such-queue"
			}
			errs[i] = tr.Dispatch(ctx, transport.Outgoing{RoutingKey: key, Mandatory: true, Message: msg})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i%2 == 1) != errors.Is(err, transport.ErrUnroutable) {
			t.Fatalf("message %d: Dispatch = %v", i, err)
		}
	}
	for range 100 {
		next(t, got, 10*time.Second)
	}
}

func TestDispatchConcurrentOrdered(t *testing.T) {
	tr := dial(t, amqp.Options{PublishChannels: 3, ConfirmWindow: 16})
	q := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: q})
	got := collect(t, tr, q, transport.ConsumeOptions{Concurrency: 1, Prefetch: 100})
	ctx := testCtx(t, 60*time.Second)
	const senders, batches, size = 16, 10, 5
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				batch := make([]transport.Outgoing, size)
				for i := range batch {
					batch[i] = transport.Outgoing{RoutingKey: q, Mandatory: true,
						Message: transport.Message{ID: fmt.Sprintf("%d-%d-%d", s, b, i)}}
				}
				if err := tr.Dispatch(ctx, batch...); err != nil {
					t.Errorf("Dispatch: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Per sender, messages arrive in the order they were dispatched.
	last := map[string]int{}
	for range senders * batches * size {
		d := next(t, got, 20*time.Second)
		var s, b, i int
		if _, err := fmt.Sscanf(d.ID, "%d-%d-%d", &s, &b, &i); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprint(s)
		n := b*size + i
		if prev, ok := last[key]; ok && n <= prev {
			t.Fatalf("sender %d: message %d after %d", s, n, prev)
		}
		last[key] = n
	}
}

func TestDeclare(t *testing.T) {
	tr := dial(t, amqp.Options{})
	ctx := testCtx(t, 30*time.Second)

	t.Run("conflicting type", func(t *testing.T) {
		q := queueName(t, tr)
		declare(t, tr, transport.Queue{Name: q}) // quorum
		declare(t, tr, transport.Queue{Name: q, Type: transport.Quorum})
		err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q, Type: transport.Classic}})
		if !errors.Is(err, transport.ErrTopologyConflict) || !strings.Contains(err.Error(), q) || !strings.Contains(err.Error(), "x-queue-type") {
			t.Fatalf("Declare = %v, want ErrTopologyConflict naming %q and x-queue-type", err, q)
		}
		var aerr *amqp091.Error
		if !errors.As(err, &aerr) || aerr.Code != amqp091.PreconditionFailed {
			t.Fatalf("amqp091 error not reachable in %v", err)
		}
	})
	t.Run("conflicting argument", func(t *testing.T) {
		q := queueName(t, tr)
		declare(t, tr, transport.Queue{Name: q, Type: transport.Classic, Arguments: transport.Headers{"x-max-length": 10}})
		err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q, Type: transport.Classic, Arguments: transport.Headers{"x-max-length": 20}}})
		if !errors.Is(err, transport.ErrTopologyConflict) || !strings.Contains(err.Error(), "x-max-length") {
			t.Fatalf("Declare = %v, want ErrTopologyConflict naming x-max-length", err)
		}
		// The transport still works after the channel error.
		declare(t, tr, transport.Queue{Name: q, Type: transport.Classic, Arguments: transport.Headers{"x-max-length": 10}})
	})
	t.Run("shared queue used as found", func(t *testing.T) {
		q := queueName(t, tr)
		declare(t, tr, transport.Queue{Name: q, Type: transport.Classic})
		declare(t, tr, transport.Queue{Name: q, Shared: true, Arguments: transport.Headers{"x-max-length": 5}})
		// Created as described when missing.
		q2 := queueName(t, tr)
		declare(t, tr, transport.Queue{Name: q2, Shared: true, Type: transport.Classic})
		err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q2, Type: transport.Quorum}})
		if !errors.Is(err, transport.ErrTopologyConflict) {
			t.Fatalf("shared queue was not created as classic: %v", err)
		}
	})
	t.Run("bindings", func(t *testing.T) {
		q := queueName(t, tr)
		declare(t, tr, transport.Queue{Name: q}, "a.*")
		got := collect(t, tr, q, transport.ConsumeOptions{Prefetch: 10})
		if err := tr.Bind(ctx, q, "b.#"); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"a.x", "b", "b.y.z"} {
			if err := tr.Dispatch(ctx, transport.Outgoing{Exchange: transport.Topic, RoutingKey: k, Mandatory: true}); err != nil {
				t.Fatalf("publish %q: %v", k, err)
			}
			if d := next(t, got, 10*time.Second); d.Exchange != transport.Topic || d.RoutingKey != k {
				t.Fatalf("delivery %v %q, want topic %q", d.Exchange, d.RoutingKey, k)
			}
		}
		if err := tr.Unbind(ctx, q, "b.#"); err != nil {
			t.Fatal(err)
		}
		if err := tr.Unbind(ctx, q, "never.bound"); err != nil {
			t.Fatalf("Unbind of a missing binding: %v", err)
		}
		err := tr.Dispatch(ctx, transport.Outgoing{Exchange: transport.Topic, RoutingKey: "b", Mandatory: true})
		if !errors.Is(err, transport.ErrUnroutable) {
			t.Fatalf("after Unbind: %v, want ErrUnroutable", err)
		}
		if err := tr.Bind(ctx, "amqp-test-no-such-queue", "x"); !errors.Is(err, transport.ErrNotFound) {
			t.Fatalf("Bind on a missing queue = %v, want ErrNotFound", err)
		}
		if err := tr.Unbind(ctx, "amqp-test-no-such-queue", "x"); err != nil {
			t.Fatalf("Unbind on a missing queue = %v", err)
		}
	})
	t.Run("invalid names", func(t *testing.T) {
		err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "amq.x"}})
		if !errors.Is(err, transport.ErrInvalidName) {
			t.Fatalf("Declare amq.x = %v", err)
		}
		err = tr.Dispatch(ctx, transport.Outgoing{RoutingKey: ""})
		if !errors.Is(err, transport.ErrInvalidName) {
			t.Fatalf("Dispatch to empty key = %v", err)
		}
	})
}

func TestTemporaryQueue(t *testing.T) {
	tr := dial(t, amqp.Options{})
	q := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: q, Temporary: true, Type: transport.Quorum})
	got := collect(t, tr, q, transport.ConsumeOptions{})
	if err := tr.Dispatch(testCtx(t, 10*time.Second), transport.Outgoing{RoutingKey: q, Mandatory: true}); err != nil {
		t.Fatal(err)
	}
	next(t, got, 10*time.Second)

	// A PikaBus 2 service replying to a Request does this on a connection
	// of its own: bind the reply queue on the direct exchange under its
	// name (PikaBusSetup._BindDestination), then publish. On an exclusive
	// queue the bind failed with RESOURCE_LOCKED.
	raw, err := amqp091.Dial(brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ch, err := raw.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q, q, "PikaBusDirect", false, nil); err != nil {
		t.Fatalf("another connection binding the temporary queue, as PikaBus 2 does: %v", err)
	}
	if err := ch.PublishWithContext(testCtx(t, 10*time.Second), "PikaBusDirect", q, true, false, amqp091.Publishing{MessageId: "py"}); err != nil {
		t.Fatal(err)
	}
	if d := next(t, got, 10*time.Second); d.ID != "py" {
		t.Fatalf("got %q, want the message published by the other connection", d.ID)
	}

	other := dial(t, amqp.Options{})
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Inspect(testCtx(t, 10*time.Second), q); !errors.Is(err, transport.ErrNotFound) {
		t.Fatalf("temporary queue outlived its transport: %v", err)
	}
}

func TestInspectGetDelete(t *testing.T) {
	tr := dial(t, amqp.Options{})
	ctx := testCtx(t, 20*time.Second)
	q := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: q, Type: transport.Classic})
	for i := range 3 {
		if err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: q, Message: transport.Message{ID: fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	info, err := tr.Inspect(ctx, q)
	if err != nil || info.Messages != 3 || info.Consumers != 0 || info.Name != q {
		t.Fatalf("Inspect = %+v, %v", info, err)
	}
	d, ok, err := tr.Get(ctx, q)
	if err != nil || !ok || d.ID != "0" {
		t.Fatalf("Get = %v %v %v", d, ok, err)
	}
	if err := d.Nack(true); err != nil {
		t.Fatal(err)
	}
	d, ok, err = tr.Get(ctx, q)
	if err != nil || !ok || d.ID != "0" || !d.Redelivered {
		t.Fatalf("Get after Nack = %+v %v %v", d, ok, err)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		d, ok, err := tr.Get(ctx, q)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		_ = d.Ack()
	}
	if _, ok, err := tr.Get(ctx, q); ok || err != nil {
		t.Fatalf("Get on an empty queue = %v %v", ok, err)
	}
	if _, _, err := tr.Get(ctx, "amqp-test-no-such-queue"); !errors.Is(err, transport.ErrNotFound) {
		t.Fatalf("Get on a missing queue = %v", err)
	}
	if err := tr.DeleteQueue(ctx, q); err != nil {
		t.Fatal(err)
	}
	if err := tr.DeleteQueue(ctx, q); err != nil {
		t.Fatalf("second DeleteQueue = %v", err)
	}
	if _, err := tr.Inspect(ctx, q); !errors.Is(err, transport.ErrNotFound) {
		t.Fatalf("Inspect after delete = %v", err)
	}
}

func TestDeferred(t *testing.T) {
	tr := dial(t, amqp.Options{})
	ctx := testCtx(t, 60*time.Second)
	if got, want := tr.MaxDelay(), time.Duration(1<<28-1)*time.Second; got != want {
		t.Fatalf("MaxDelay = %v, want %v", got, want)
	}
	q := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: q})
	got := collect(t, tr, q, transport.ConsumeOptions{Prefetch: 10})

	// A queue declared behind the transport's back, never bound on the
	// delivery exchange: Dispatch binds it.
	foreign := queueName(t, tr)
	raw := rawChannel(t)
	if _, err := raw.QueueDeclare(foreign, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	gotForeign := collect(t, tr, foreign, transport.ConsumeOptions{})

	start := time.Now()
	notBefore := start.Add(1500 * time.Millisecond)
	err := tr.Dispatch(ctx,
		transport.Outgoing{RoutingKey: q, Mandatory: true, NotBefore: notBefore, Message: transport.Message{ID: "later", Headers: transport.Headers{"k": "v"}}},
		transport.Outgoing{RoutingKey: q, Mandatory: true, NotBefore: start.Add(-time.Second), Message: transport.Message{ID: "past"}},
		transport.Outgoing{RoutingKey: foreign, Mandatory: true, NotBefore: start.Add(time.Second), Message: transport.Message{ID: "foreign"}},
		// 3 s: through level 1, then level 0.
		transport.Outgoing{RoutingKey: foreign, Mandatory: true, NotBefore: start.Add(2500 * time.Millisecond), Message: transport.Message{ID: "two-levels"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	if d := next(t, got, 10*time.Second); d.ID != "past" {
		t.Fatalf("first delivery %q, want the one not deferred", d.ID)
	}
	d := next(t, got, 10*time.Second)
	if arrived := time.Now(); d.ID != "later" || arrived.Before(notBefore) {
		t.Fatalf("delivery %q at %v, want \"later\" not before %v", d.ID, arrived.Sub(start), notBefore.Sub(start))
	}
	if d.Exchange != transport.Direct || d.RoutingKey != q {
		t.Fatalf("deferred delivery shows exchange %v key %q, want direct %q", d.Exchange, d.RoutingKey, q)
	}
	if !reflect.DeepEqual(d.Headers, transport.Headers{"k": "v"}) {
		t.Fatalf("deferred delivery headers %#v: dead-lettering headers must be hidden", d.Headers)
	}
	if d := next(t, gotForeign, 10*time.Second); d.ID != "foreign" || d.RoutingKey != foreign {
		t.Fatalf("foreign delivery %q %q", d.ID, d.RoutingKey)
	}
	d = next(t, gotForeign, 10*time.Second)
	if arrived := time.Now(); d.ID != "two-levels" || d.RoutingKey != foreign || arrived.Before(start.Add(2500*time.Millisecond)) {
		t.Fatalf("delivery %q %q at %v, want \"two-levels\" not before 2.5s", d.ID, d.RoutingKey, arrived.Sub(start))
	}
	if len(d.Headers) != 0 {
		t.Fatalf("deferred delivery headers %#v: dead-lettering headers must be hidden", d.Headers)
	}

	err = tr.Dispatch(ctx, transport.Outgoing{RoutingKey: "amqp-test-no-such-queue", Mandatory: true, NotBefore: time.Now().Add(time.Hour)})
	if !errors.Is(err, transport.ErrUnroutable) {
		t.Fatalf("deferred mandatory to a missing queue = %v, want ErrUnroutable", err)
	}
	err = tr.Dispatch(ctx, transport.Outgoing{RoutingKey: q, NotBefore: time.Now().Add(tr.MaxDelay() + time.Hour)})
	if !errors.Is(err, transport.ErrNotSupported) {
		t.Fatalf("delay over MaxDelay = %v, want ErrNotSupported", err)
	}
	err = tr.Dispatch(ctx, transport.Outgoing{Exchange: transport.Topic, RoutingKey: "a", NotBefore: time.Now().Add(time.Hour)})
	if !errors.Is(err, transport.ErrNotSupported) {
		t.Fatalf("deferred topic message = %v, want ErrNotSupported", err)
	}
}

// TestDeferredLevels checks the routing of the delay levels without waiting:
// messages deferred by various delays sit in their entry level (see
// delays.path).
func TestDeferredLevels(t *testing.T) {
	url := brokertest.URL(t)
	tr := dial(t, amqp.Options{DelayLevels: 6, DelayPrefix: "amqp-test-delay"})
	ctx := testCtx(t, 30*time.Second)
	q := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: q})
	names := []string{"amqp-test-delay-delivery", "amqp-test-delay-undelivered"}
	for l := range 6 {
		names = append(names, fmt.Sprintf("amqp-test-delay-%02d", l))
	}
	t.Cleanup(func() {
		for _, n := range names {
			_ = tr.DeleteQueue(context.Background(), n)
		}
		deleteExchanges(t, url, names...)
	})
	if got := tr.MaxDelay(); got != 63*time.Second {
		t.Fatalf("MaxDelay = %v", got)
	}
	now := time.Now()
	for _, s := range []int{40, 33, 20, 9} {
		if err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: q, Mandatory: true, NotBefore: now.Add(time.Duration(s) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	// Each message enters the first of its levels in ascending order
	// rotated by its rank among the transport's deferred messages (1 to
	// 4), 33 and 9 s rounded up to 34 and 10: 40 s = levels 3 and 5,
	// rotated once: 5; 34 s = 1 and 5, twice: 1; 20 s = 2 and 4, three
	// times: 4; 10 s = 1 and 3, four times: 1.
	want := map[int]int{5: 1, 1: 2, 4: 1}
	for l := range 6 {
		info, err := tr.Inspect(ctx, fmt.Sprintf("amqp-test-delay-%02d", l))
		if err != nil {
			t.Fatal(err)
		}
		if info.Messages != want[l] {
			t.Errorf("level %d holds %d messages, want %d", l, info.Messages, want[l])
		}
	}

	// On a fresh set of levels, a message that waits in two of them: its
	// hops are bound by the Dispatch that sends it.
	got := collect(t, tr, q, transport.ConsumeOptions{})
	sent := time.Now()
	if err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: q, Mandatory: true, NotBefore: sent.Add(3 * time.Second),
		Message: transport.Message{ID: "hops"}}); err != nil {
		t.Fatal(err)
	}
	if d := next(t, got, 15*time.Second); d.ID != "hops" || d.RoutingKey != q || time.Since(sent) < 3*time.Second {
		t.Fatalf("delivery %q %q after %v, want \"hops\" after 3s", d.ID, d.RoutingKey, time.Since(sent))
	}

	// A deferred message whose queue is gone by the time it is due ends in
	// the undelivered queue, not stuck in level 0 for ever.
	gone := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: gone})
	if err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: gone, NotBefore: time.Now().Add(time.Second),
		Message: transport.Message{ID: "orphan"}}); err != nil {
		t.Fatal(err)
	}
	if err := tr.DeleteQueue(ctx, gone); err != nil {
		t.Fatal(err)
	}
	var d *transport.Delivery
	for d == nil {
		got, ok, err := tr.Get(ctx, "amqp-test-delay-undelivered")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			d = got
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the orphaned message never reached the undelivered queue")
		case <-time.After(100 * time.Millisecond):
		}
	}
	if d.ID != "orphan" || d.RoutingKey != gone {
		t.Fatalf("undelivered message %q with routing key %q, want \"orphan\" for %q", d.ID, d.RoutingKey, gone)
	}
	_ = d.Ack()
	if info, err := tr.Inspect(ctx, "amqp-test-delay-00"); err != nil || info.Messages != 0 {
		t.Fatalf("level 0: %+v %v", info, err)
	}
}

// TestForeignHeaders checks that headers RabbitMQ itself adds (x-death on a
// dead-lettered message, x-delivery-count on a quorum redelivery) decode.
func TestForeignHeaders(t *testing.T) {
	tr := dial(t, amqp.Options{})
	ctx := testCtx(t, 30*time.Second)
	target := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: target})
	src := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: src, Arguments: transport.Headers{
		"x-dead-letter-exchange": transport.DefaultDirectExchange, "x-dead-letter-routing-key": target,
	}})
	c, err := tr.Consume(ctx, src, transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) {
		if !d.Redelivered {
			_ = d.Nack(true) // quorum redelivery: x-delivery-count
			return
		}
		if n, ok := d.Headers["x-delivery-count"].(int64); !ok || n != 1 {
			t.Errorf("x-delivery-count = %#v", d.Headers["x-delivery-count"])
		}
		_ = d.Nack(false) // dead-letter
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := collect(t, tr, target, transport.ConsumeOptions{})
	if err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: src, Mandatory: true}); err != nil {
		t.Fatal(err)
	}
	d := next(t, got, 10*time.Second)
	deaths, ok := d.Headers["x-death"].([]any)
	if !ok || len(deaths) != 1 {
		t.Fatalf("x-death = %#v", d.Headers["x-death"])
	}
	death := deaths[0].(map[string]any)
	if death["queue"] != src || death["reason"] != "rejected" || death["count"] != int64(1) {
		t.Fatalf("x-death entry %#v", death)
	}
	if _, ok := death["time"].(time.Time); !ok {
		t.Fatalf("x-death time %#v", death["time"])
	}
	if _, err := d.Headers.Normalize(); err != nil {
		t.Fatalf("delivered headers are not canonical: %v", err)
	}
}

func TestConsumerQueueDeleted(t *testing.T) {
	tr := dial(t, amqp.Options{})
	ctx := testCtx(t, 30*time.Second)
	for _, typ := range []transport.QueueType{transport.Quorum, transport.Classic} {
		t.Run(string(typ), func(t *testing.T) {
			q := queueName(t, tr)
			declare(t, tr, transport.Queue{Name: q, Type: typ})
			var calls sync.Map
			c, err := tr.Consume(ctx, q, transport.ConsumeOptions{Concurrency: 4}, func(ctx context.Context, d *transport.Delivery) {
				calls.Store(d.ID, d)
				_ = d.Ack()
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: q, Message: transport.Message{ID: "one"}}); err != nil {
				t.Fatal(err)
			}
			if err := tr.DeleteQueue(ctx, q); err != nil {
				t.Fatal(err)
			}
			select {
			case <-c.Done():
			case <-ctx.Done():
				t.Fatal("consumer did not stop when its queue was deleted")
			}
			if !errors.Is(c.Err(), transport.ErrNotFound) {
				t.Fatalf("Err = %v, want ErrNotFound", c.Err())
			}
			calls.Range(func(k, v any) bool {
				if k != "one" {
					t.Errorf("phantom delivery %q: %#v", k, v)
				}
				return true
			})
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := tr.Consume(ctx, "amqp-test-no-such-queue", transport.ConsumeOptions{}, func(context.Context, *transport.Delivery) {}); !errors.Is(err, transport.ErrNotFound) {
		t.Fatalf("Consume of a missing queue = %v, want ErrNotFound", err)
	}
}

func TestDrainRequeues(t *testing.T) {
	tr := dial(t, amqp.Options{})
	ctx := testCtx(t, 30*time.Second)
	q := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: q})
	batch := make([]transport.Outgoing, 20)
	for i := range batch {
		batch[i] = transport.Outgoing{RoutingKey: q, Message: transport.Message{ID: fmt.Sprint(i)}}
	}
	if err := tr.Dispatch(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	release := make(chan struct{})
	var handled []string
	var mu sync.Mutex
	c, err := tr.Consume(ctx, q, transport.ConsumeOptions{Concurrency: 1, Prefetch: 10}, func(ctx context.Context, d *transport.Delivery) {
		mu.Lock()
		handled = append(handled, d.ID)
		first := len(handled) == 1
		mu.Unlock()
		if first {
			close(started)
			<-release
		}
		_ = d.Ack()
	})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	drained := make(chan error, 1)
	go func() { drained <- c.Drain(ctx) }()
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v while a handler was running", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	n := len(handled)
	mu.Unlock()
	if n != 1 {
		t.Fatalf("handled %d messages after Drain began, want only the running one", n)
	}
	got := collect(t, tr, q, transport.ConsumeOptions{Prefetch: 20})
	for range 19 {
		next(t, got, 10*time.Second)
	}
}

func TestAckAfterClose(t *testing.T) {
	tr := dial(t, amqp.Options{})
	ctx := testCtx(t, 30*time.Second)
	q := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: q})
	kept := make(chan *transport.Delivery, 1)
	c, err := tr.Consume(ctx, q, transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) { kept <- d })
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: q}); err != nil {
		t.Fatal(err)
	}
	d := next(t, kept, 10*time.Second)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Ack after Close = %v, want ErrClosed", err)
	}
	if err := d.Ack(); !errors.Is(err, transport.ErrSettled) {
		t.Fatalf("second Ack = %v, want ErrSettled", err)
	}
	got := collect(t, tr, q, transport.ConsumeOptions{})
	if d := next(t, got, 10*time.Second); !d.Redelivered {
		t.Fatal("requeued message not marked redelivered")
	}
}

func TestCredentialsNeverShown(t *testing.T) {
	broker := brokertest.URL(t)
	u, err := url.Parse(broker)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "s3cr3t-Pa55"
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	wrongPassword := *u
	wrongPassword.User = url.UserPassword("guest", secret)
	closedPort := *u
	closedPort.User = url.UserPassword("guest", secret)
	closedPort.Host = "127.0.0.1:1"
	ctx := testCtx(t, 30*time.Second)
	for _, urls := range [][]string{
		{wrongPassword.String()},
		{closedPort.String(), wrongPassword.String()},
		{"amqp://guest:" + secret + "@bad host/"},
		{"http://guest:" + secret + "@localhost/"},
	} {
		_, err := amqp.Dial(ctx, urls[0], amqp.Options{ClusterURLs: urls[1:], Logger: logger})
		if err == nil {
			t.Fatalf("Dial(%v) succeeded", amqp.RedactURL(urls[0]))
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("error shows the password: %v", err)
		}
		t.Log(err)
	}
	// A transport that connects through a failover list logs without it.
	good := *u
	good.User = url.UserPassword(u.User.Username(), mustPassword(u))
	tr, err := amqp.Dial(ctx, closedPort.String(), amqp.Options{ClusterURLs: []string{good.String()}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), secret) || strings.Contains(logs.String(), ":"+mustPassword(u)+"@") {
		t.Fatalf("log shows a password:\n%s", logs.String())
	}
	if got := amqp.RedactURL("amqps://u:p%40ss@h:5671/vh"); strings.Contains(got, "p%40ss") || !strings.Contains(got, "u:xxxxx@h:5671") {
		t.Fatalf("RedactURL = %q", got)
	}
}

func mustPassword(u *url.URL) string {
	p, _ := u.User.Password()
	return p
}

func TestWatchAndHealth(t *testing.T) {
	tr := dial(t, amqp.Options{})
	ctx := testCtx(t, 30*time.Second)
	var mu sync.Mutex
	var events []transport.Event
	stop := tr.Watch(func(e transport.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	})
	defer stop()
	q := queueName(t, tr)
	declare(t, tr, transport.Queue{Name: q})
	c, err := tr.Consume(ctx, q, transport.ConsumeOptions{}, func(ctx context.Context, d *transport.Delivery) { _ = d.Ack() })
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Health(ctx); err != nil {
		t.Fatalf("Health = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		var kinds []transport.EventKind
		for _, e := range events {
			if e.Queue == q {
				kinds = append(kinds, e.Kind)
			}
		}
		mu.Unlock()
		if reflect.DeepEqual(kinds, []transport.EventKind{transport.ConsumerStarted, transport.ConsumerStopped}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events for %q: %v", q, kinds)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Health(ctx); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Health after Close = %v", err)
	}
	if err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: q}); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Dispatch after Close = %v", err)
	}
	if _, err := tr.Consume(ctx, q, transport.ConsumeOptions{}, func(context.Context, *transport.Delivery) {}); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Consume after Close = %v", err)
	}
	if err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q}}); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Declare after Close = %v", err)
	}
}

// rawChannel opens a plain amqp091 channel on the test broker.
func rawChannel(t testing.TB) *amqp091.Channel {
	t.Helper()
	conn, err := amqp091.Dial(brokertest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// TestDialBoundedByContext: a server that accepts TCP connections and never
// answers must not hold Dial beyond its context.
func TestDialBoundedByContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		_ = ln.Close()
		wg.Wait()
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	// Were the context ignored, the handshake would end after DialTimeout
	// with an I/O timeout instead.
	_, err = amqp.Dial(ctx, "amqp://guest:guest@"+ln.Addr().String()+"/", amqp.Options{DialTimeout: 30 * time.Second})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial = %v, want DeadlineExceeded", err)
	}
}
