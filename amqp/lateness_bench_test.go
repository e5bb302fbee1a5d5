package amqp_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/internal/benchkit"
	"github.com/busline/busline/transport"
)

// BenchmarkDeferLateness: N deferred messages fall due at the same moment;
// how late do they arrive? N is BUSLINE_BENCH_DEFER_N (default 2,000, which
// `make bench` runs in seconds; run 100,000 by hand with -benchtime 1x).
// Each round sends the N messages first, as fast as it can, all with one
// due time a margin after the sending ends, then consumes them (prefetch
// 200) and reports the lateness of their arrival (p50, p99, max, in ms)
// and the rate at which they arrived. Columns:
//
//   - transport: the delay levels, as Dispatch uses them: each message
//     waits in a level per set bit of its delay (odd delays rounded up to
//     even ones, the entry level taking the rounding back), in an order
//     rotated message by message (see delays.path), so the messages, due
//     together, enter and leave their last level in crowds split over
//     several queues, which each level's at-least-once dead-lettering
//     moves on at its own rate;
//   - transport-onehop: every message deferred by 8 s exactly, so through
//     one level only (its lateness counts from the first one's due time);
//   - raw-levels: amqp091-go publishing into level 3 as the transport
//     does (to the default exchange, the delivery key as routing key, a
//     BCC of level 3's queue and of its hop to the delivery exchange):
//     the broker's own limit for a hop through the levels;
//   - raw-levels-topic: the same through level 3's topic exchange with
//     the 29-word delay key, the levels' original routing (NServiceBus's);
//   - raw-dlx: the broker's own limit for one hop of at-least-once
//     dead-lettering, with amqp091-go: the N messages wait in one quorum
//     queue, each with the per-message TTL that makes it expire at the
//     due time, and are dead-lettered through the default exchange;
//   - raw-dlx-topic: the same, dead-lettered into level 0's topic exchange
//     with an all-zero delay key, as the levels' last hop is routed (to
//     level 0's exchange, on to the delivery exchange, to the queue);
//     BUSLINE_BENCH_DLX_EXCHANGE names another exchange to route through.
//
// The figures and what they say are in the README ("Deferral lateness").
func BenchmarkDeferLateness(b *testing.B) {
	n := 2000
	if s := os.Getenv("BUSLINE_BENCH_DEFER_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("BUSLINE_BENCH_DEFER_N=%q: want a positive number of messages", s)
		}
		n = v
	}
	b.Run("transport", func(b *testing.B) {
		for range b.N {
			lateness(b, n, deferTransport)
		}
	})
	b.Run("transport-onehop", func(b *testing.B) {
		for range b.N {
			lateness(b, n, deferOneHop)
		}
	})
	b.Run("raw-dlx", func(b *testing.B) {
		for range b.N {
			lateness(b, n, deferRawDLX)
		}
	})
	b.Run("raw-dlx-topic", func(b *testing.B) {
		for range b.N {
			lateness(b, n, deferRawDLXTopic)
		}
	})
	b.Run("raw-levels", func(b *testing.B) {
		for range b.N {
			lateness(b, n, deferRawLevels)
		}
	})
	b.Run("raw-levels-topic", func(b *testing.B) {
		for range b.N {
			lateness(b, n, deferRawLevelsTopic)
		}
	})
}

// deferRound sends n messages to fall due at due (returned) and arrange
// that arrived is called as each arrives.
type deferRound func(b *testing.B, n int, margin time.Duration, arrived func()) (due time.Time)

// lateness runs one round and reports its figures.
func lateness(b *testing.B, n int, round deferRound) {
	// A margin for the sending: long enough for n messages at 500 per
	// second (a loaded machine), and at least three seconds, so that the
	// messages pass through more than one delay level.
	margin := 3*time.Second + time.Duration(n)*time.Second/500
	var mu sync.Mutex
	at := make([]time.Time, 0, n)
	all := make(chan struct{})
	arrived := func() {
		now := time.Now()
		mu.Lock()
		at = append(at, now)
		if len(at) == n {
			close(all)
		}
		mu.Unlock()
	}
	b.ResetTimer()
	due := round(b, n, margin, arrived)
	select {
	case <-all:
	case <-time.After(margin + 5*time.Minute):
		mu.Lock()
		b.Fatalf("%d of %d deferred messages arrived", len(at), n)
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	late := make([]time.Duration, len(at))
	for i, t := range at {
		late[i] = t.Sub(due)
	}
	slices.Sort(late)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	metrics := map[string]float64{
		"p50-late-ms": ms(late[len(late)/2]),
		"p99-late-ms": ms(late[len(late)*99/100]),
		"max-late-ms": ms(late[len(late)-1]),
	}
	if span := late[len(late)-1] - late[0]; span > 0 {
		metrics["arrived-msg/s"] = float64(n) / span.Seconds()
	}
	for k, v := range metrics {
		b.ReportMetric(v, k)
	}
	benchkit.Record(b, metrics)
	if early := late[0]; early < 0 {
		b.Errorf("a message arrived %v early", -early)
	}
}

// deferTransport sends with Dispatch, in batches, each message with the
// same NotBefore.
func deferTransport(b *testing.B, n int, margin time.Duration, arrived func()) time.Time {
	tr := dial(b, amqp.Options{})
	q := benchQueue(b, tr, transport.Quorum)
	due := time.Now().Add(margin).Truncate(time.Second)
	const batch = 500
	ctx := context.Background()
	msgs := make([]transport.Outgoing, 0, batch)
	for i := 0; i < n; i += batch {
		msgs = msgs[:0]
		for range min(batch, n-i) {
			m := transportMsg(q)
			m.NotBefore = due
			msgs = append(msgs, m)
		}
		if err := tr.Dispatch(ctx, msgs...); err != nil {
			b.Fatal(err)
		}
	}
	if time.Now().After(due) {
		b.Fatalf("sending %d messages outlasted the margin of %v", n, margin)
	}
	c, err := tr.Consume(ctx, q, transport.ConsumeOptions{Prefetch: 200}, func(ctx context.Context, d *transport.Delivery) {
		arrived()
		_ = d.Ack()
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return due
}

// deferOneHop defers every message by 8 seconds exactly, so that it
// waits in one level only (bit 3), and returns the first one's due time.
func deferOneHop(b *testing.B, n int, margin time.Duration, arrived func()) time.Time {
	tr := dial(b, amqp.Options{})
	q := benchQueue(b, tr, transport.Quorum)
	const batch = 500
	ctx := context.Background()
	msgs := make([]transport.Outgoing, 0, batch)
	var first time.Time
	for i := 0; i < n; i += batch {
		msgs = msgs[:0]
		due := time.Now().Add(8 * time.Second)
		if first.IsZero() {
			first = due
		}
		for range min(batch, n-i) {
			m := transportMsg(q)
			m.NotBefore = due
			msgs = append(msgs, m)
		}
		if err := tr.Dispatch(ctx, msgs...); err != nil {
			b.Fatal(err)
		}
	}
	c, err := tr.Consume(ctx, q, transport.ConsumeOptions{Prefetch: 200}, func(ctx context.Context, d *transport.Delivery) {
		arrived()
		_ = d.Ack()
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return first
}

// deferRawDLX: one quorum queue, at-least-once dead-lettering through the
// default exchange to the destination, per-message TTLs that end at due.
func deferRawDLX(b *testing.B, n int, margin time.Duration, arrived func()) time.Time {
	return rawDLX(b, n, margin, arrived, false)
}

// deferRawDLXTopic: as deferRawDLX, dead-lettering into level 0's topic
// exchange with a routing key whose bits are all 0 (so it goes on to the
// delivery exchange and the destination): the routing of the last hop of
// the delay levels, without their queues.
func deferRawDLXTopic(b *testing.B, n int, margin time.Duration, arrived func()) time.Time {
	return rawDLX(b, n, margin, arrived, true)
}

func rawDLX(b *testing.B, n int, margin time.Duration, arrived func(), levels bool) time.Time {
	tr := dial(b, amqp.Options{})
	dest := benchQueue(b, tr, transport.Quorum)
	hold := queueName(b, tr)
	conn := rawConn(b)
	ch := rawConfirmChannel(b, conn)
	args := amqp091.Table{
		"x-queue-type":              "quorum",
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": dest,
		"x-dead-letter-strategy":    "at-least-once",
		"x-overflow":                "reject-publish",
	}
	if levels {
		if err := ch.QueueBind(dest, strings.Repeat("*.", 28)+dest, "busline-delay-delivery", false, nil); err != nil {
			b.Fatal(err)
		}
		args["x-dead-letter-exchange"] = rawDLXTopicExchange
		args["x-dead-letter-routing-key"] = strings.Repeat("0.", 28) + dest
	}
	due := time.Now().Add(margin).Truncate(time.Second)
	if _, err := ch.QueueDeclare(hold, true, false, false, false, args); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	window := make([]*amqp091.DeferredConfirmation, 0, 512)
	for range n {
		if len(window) == cap(window) {
			if !window[0].Wait() {
				b.Fatal("nack")
			}
			window = window[1:]
		}
		m := rawPublishing()
		m.Expiration = strconv.FormatInt(max(time.Until(due).Milliseconds(), 0), 10)
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", hold, true, false, m)
		if err != nil {
			b.Fatal(err)
		}
		window = append(window, dc)
	}
	for _, dc := range window {
		if !dc.Wait() {
			b.Fatal("nack")
		}
	}
	if time.Now().After(due) {
		b.Fatalf("sending %d messages outlasted the margin of %v", n, margin)
	}
	cch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := cch.Qos(200, 0, false); err != nil {
		b.Fatal(err)
	}
	ds, err := cch.Consume(dest, "", false, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		k := 0
		for d := range ds {
			arrived()
			if k++; k%50 == 0 {
				_ = d.Ack(true)
			}
		}
	}()
	b.Cleanup(func() { _ = cch.Close() })
	return due
}

// deferRawLevels publishes with amqp091-go straight into the delay
// levels, as the transport does (a delay of 8 seconds: level 3 only).
func deferRawLevels(b *testing.B, n int, margin time.Duration, arrived func()) time.Time {
	return rawLevels(b, n, arrived, true)
}

// deferRawLevelsTopic is deferRawLevels through level 3's topic exchange
// with the 29-word delay key.
func deferRawLevelsTopic(b *testing.B, n int, margin time.Duration, arrived func()) time.Time {
	return rawLevels(b, n, arrived, false)
}

func rawLevels(b *testing.B, n int, arrived func(), hops bool) time.Time {
	tr := dial(b, amqp.Options{})
	dest := benchQueue(b, tr, transport.Quorum)
	prepareRoutes(b, tr, dest)
	conn := rawConn(b)
	ch := rawConfirmChannel(b, conn)
	exchange, key := "busline-delay-03", strings.Repeat("0.", 24)+"1.0.0.0."+dest
	var headers amqp091.Table
	if hops {
		exchange, key = "", "busline-delay>"+strings.ReplaceAll(strings.ReplaceAll(dest, "%", "%25"), ".", "%2E")
		headers = amqp091.Table{"BCC": []any{"busline-delay-03", "busline-delay-03>delivery"}}
	}
	ctx := context.Background()
	window := make([]*amqp091.DeferredConfirmation, 0, 512)
	first := time.Now().Add(8 * time.Second)
	for range n {
		if len(window) == cap(window) {
			if !window[0].Wait() {
				b.Fatal("nack")
			}
			window = window[1:]
		}
		m := rawPublishing()
		m.Headers = headers
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, m)
		if err != nil {
			b.Fatal(err)
		}
		window = append(window, dc)
	}
	for _, dc := range window {
		if !dc.Wait() {
			b.Fatal("nack")
		}
	}
	cch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := cch.Qos(200, 0, false); err != nil {
		b.Fatal(err)
	}
	ds, err := cch.Consume(dest, "", false, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		k := 0
		for d := range ds {
			arrived()
			if k++; k%50 == 0 {
				_ = d.Ack(true)
			}
		}
	}()
	b.Cleanup(func() { _ = cch.Close() })
	return first
}

// rawDLXTopicExchange is where raw-dlx-topic dead-letters to: level 0's
// exchange, or (BUSLINE_BENCH_DLX_EXCHANGE) another, such as the delivery
// exchange itself, to tell their routing costs apart.
var rawDLXTopicExchange = func() string {
	if e := os.Getenv("BUSLINE_BENCH_DLX_EXCHANGE"); e != "" {
		return e
	}
	return "busline-delay-00"
}()

// prepareRoutes makes tr bind what its first deferral to dest would, for
// the raw columns, which publish into the levels themselves: dest on the
// delivery exchange (under its hop key and its 29-word key), and the hop
// from level 3 to the delivery exchange.
func prepareRoutes(b *testing.B, tr *amqp.Transport, dest string) {
	ctx := context.Background()
	// A send binds dest; its message is taken back out.
	if err := tr.Dispatch(ctx, transportMsg(dest)); err != nil {
		b.Fatal(err)
	}
	if d, ok, err := tr.Get(ctx, dest); err != nil || !ok {
		b.Fatalf("get: %v %v", ok, err)
	} else if err := d.Ack(); err != nil {
		b.Fatal(err)
	}
	// A deferral by 8 s (level 3 alone), to a queue of its own, binds the
	// hop from level 3 to the delivery exchange.
	m := transportMsg(benchQueue(b, tr, transport.Quorum))
	m.NotBefore = time.Now().Add(8 * time.Second)
	if err := tr.Dispatch(ctx, m); err != nil {
		b.Fatal(err)
	}
}
