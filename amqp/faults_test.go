package amqp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/transport"
)

// Fault injection through the fake broker: the failures a real broker
// produces rarely and at random, made to happen at a chosen moment.

func dialFake(t testing.TB, b *fakeBroker) *Transport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tr, err := Dial(ctx, "amqp://guest:guest@fake-1/", Options{
		ClusterURLs: []string{"amqp://guest:guest@fake-2/"},
		dial:        b.dial, ReconnectDelay: time.Millisecond, MaxReconnectDelay: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func outgoing(ids ...string) []transport.Outgoing {
	out := make([]transport.Outgoing, len(ids))
	for i, id := range ids {
		out[i] = transport.Outgoing{RoutingKey: "q", Mandatory: true, Message: transport.Message{ID: id}}
	}
	return out
}

// failedIndexes returns the Index of every DispatchError in err.
func failedIndexes(t *testing.T, err error) map[int]error {
	t.Helper()
	out := map[int]error{}
	if err == nil {
		return out
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var de *transport.DispatchError
		if !errors.As(e, &de) {
			t.Fatalf("%v is not a DispatchError", e)
		}
		out[de.Index] = de.Err
	}
	return out
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestFaultNack: a nack is transient (a quorum queue electing a leader, a
// full queue with reject-publish): the message is published again, after a
// pause, until the caller's context ends, on a fresh channel once the old
// one keeps nacking.
func TestFaultNack(t *testing.T) {
	b := newFakeBroker()
	var nacks atomic.Int32
	var first atomic.Pointer[fakeChannel]
	b.publisher(func(ch *fakeChannel, seq uint64, p publishCall) {
		// The first publishing channel nacks "bad" three times; its
		// replacement acks.
		first.CompareAndSwap(nil, ch)
		if ch == first.Load() && p.msg.MessageId == "bad" && nacks.Add(1) <= 3 {
			ch.nack(seq)
		} else {
			ch.ack(seq)
		}
	})
	tr := dialFake(t, b)
	if err := tr.Dispatch(ctxFor(t, 5*time.Second), outgoing("a", "bad", "c")...); err != nil {
		t.Fatalf("Dispatch = %v, want the nacked message published again", err)
	}
	var ids []string
	for _, p := range b.published() {
		ids = append(ids, p.msg.MessageId)
	}
	if fmt.Sprint(ids) != "[a bad c bad bad bad]" { // c's ack resets the streak
		t.Fatalf("published %v, want the nacked message published again until the channel was replaced", ids)
	}
	if !first.Load().isClosed() {
		t.Fatal("the channel that kept nacking was not replaced")
	}

	t.Run("until the context ends", func(t *testing.T) {
		b.publisher(func(ch *fakeChannel, seq uint64, p publishCall) { ch.nack(seq) })
		before := len(b.published())
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		err := tr.Dispatch(ctx, outgoing("never")...)
		if !errors.Is(err, transport.ErrRejected) || !errors.Is(err, context.DeadlineExceeded) ||
			!strings.Contains(err.Error(), "may or may not have been delivered") {
			t.Fatalf("Dispatch = %v, want ErrRejected and DeadlineExceeded, saying it may have been delivered", err)
		}
		// A pause that doubles from 50 ms: not a hot loop.
		if n := len(b.published()) - before; n < 2 || n > 6 {
			t.Fatalf("%d attempts in 500 ms, want a handful", n)
		}
	})
}

// TestFaultWriteError: a socket error while writing (a reset connection)
// is a lost connection: the transport closes it, reconnects and publishes
// the message again; the caller sees no error.
func TestFaultWriteError(t *testing.T) {
	b := newFakeBroker()
	tr := dialFake(t, b)
	var failed atomic.Bool
	b.mu.Lock()
	b.writeErr = func(p publishCall) error {
		if p.msg.MessageId == "2" && failed.CompareAndSwap(false, true) {
			return &net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}
		}
		return nil
	}
	b.mu.Unlock()
	if err := tr.Dispatch(ctxFor(t, 5*time.Second), outgoing("1", "2", "3")...); err != nil {
		t.Fatalf("Dispatch = %v, want the message published again on the next connection", err)
	}
	b.mu.Lock()
	conns := len(b.conns)
	b.mu.Unlock()
	if conns != 3 { // publish, consume, and the publish connection again
		t.Fatalf("%d connections, want the publishing one replaced", conns)
	}
	var ids []string
	for _, p := range b.published() {
		ids = append(ids, p.msg.MessageId)
	}
	if s := fmt.Sprint(ids); s != "[1 2 3]" && s != "[1 3 2]" && s != "[1 3 2 3]" {
		t.Fatalf("published %v", ids)
	}
}

// TestFaultGiveUpSaysWhetherSent: when the context ends, a message written
// without a confirm "may or may not have been delivered"; one never
// written was "not sent".
func TestFaultGiveUpSaysWhetherSent(t *testing.T) {
	b := newFakeBroker()
	var lost atomic.Bool
	b.publisher(func(ch *fakeChannel, seq uint64, p publishCall) {
		if lost.CompareAndSwap(false, true) {
			b.setDialErr(errDialRefused)
			go ch.c.lose()
		}
	})
	tr := dialFake(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := tr.Dispatch(ctx, outgoing("1")...)
	if !errors.Is(err, transport.ErrConnectionLost) || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "may or may not have been delivered") {
		t.Fatalf("Dispatch = %v, want ErrConnectionLost and DeadlineExceeded, saying it may have been delivered", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = tr.Dispatch(ctx, outgoing("2")...)
	if !errors.Is(err, transport.ErrConnectionLost) || !strings.Contains(err.Error(), "not sent") ||
		strings.Contains(err.Error(), "may or may not") {
		t.Fatalf("Dispatch during the outage = %v, want ErrConnectionLost, not sent", err)
	}
	b.setDialErr(nil)
}

func TestFaultReturn(t *testing.T) {
	b := newFakeBroker()
	b.publisher(func(ch *fakeChannel, seq uint64, p publishCall) {
		if p.key == "nowhere" {
			ch.ret(p)
		}
		ch.ack(seq)
	})
	tr := dialFake(t, b)
	batch := outgoing("same", "same", "same", "same")
	batch[2].RoutingKey = "nowhere"
	batch[3].Mandatory = false
	err := tr.Dispatch(ctxFor(t, 5*time.Second), batch...)
	failed := failedIndexes(t, err)
	if len(failed) != 1 || !errors.Is(failed[2], transport.ErrUnroutable) {
		t.Fatalf("Dispatch = %v, want message 2 unroutable", err)
	}
	if _, ok := b.published()[3].msg.Headers[seqHeader]; ok {
		t.Fatal("a message that is not mandatory carries the sequence header")
	}

	// Under concurrency, each return still fails only its own publish.
	var wg sync.WaitGroup
	errs := make([]error, 100)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := outgoing("same")
			if i%3 == 0 {
				o[0].RoutingKey = "nowhere"
			}
			errs[i] = tr.Dispatch(ctxFor(t, 5*time.Second), o...)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i%3 == 0) != errors.Is(err, transport.ErrUnroutable) {
			t.Fatalf("message %d: %v", i, err)
		}
	}
}

// TestFaultReturnSameMessage: copies of one message (same exchange, routing
// key and id) in flight together, one of them returned (its queue went
// away between the two publishes): the return fails that copy only.
func TestFaultReturnSameMessage(t *testing.T) {
	for _, returned := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(returned), func(t *testing.T) {
			b := newFakeBroker()
			var mu sync.Mutex
			var held []publishCall
			b.publisher(func(ch *fakeChannel, seq uint64, p publishCall) {
				mu.Lock()
				defer mu.Unlock()
				held = append(held, p)
				if seq < 3 {
					return // all three in flight before the broker answers
				}
				for i, p := range held {
					if uint64(i+1) == returned {
						b.setMissing(p.key, true)
						ch.ret(p)
					}
					ch.ack(uint64(i + 1))
				}
			})
			tr := dialFake(t, b)
			err := tr.Dispatch(ctxFor(t, 5*time.Second), outgoing("same", "same", "same")...)
			failed := failedIndexes(t, err)
			if len(failed) != 1 || !errors.Is(failed[int(returned)-1], transport.ErrUnroutable) {
				t.Fatalf("Dispatch = %v, want message %d unroutable", err, returned-1)
			}
			// The first copy went untagged, the others carried their tag.
			var tags []any
			for _, p := range b.published() {
				tags = append(tags, p.msg.Headers[seqHeader])
			}
			if fmt.Sprint(tags) != fmt.Sprint([]any{nil, int64(2), int64(3)}) {
				t.Fatalf("sequence headers %v", tags)
			}
		})
	}
}

func TestFaultChannelClosedMidBatch(t *testing.T) {
	b := newFakeBroker()
	var mu sync.Mutex
	first := true
	b.publisher(func(ch *fakeChannel, seq uint64, p publishCall) {
		mu.Lock()
		defer mu.Unlock()
		if first && seq == 3 {
			first = false
			ch.fail(amqp091.PreconditionFailed, "PRECONDITION_FAILED - something")
			return
		}
		ch.ack(seq)
	})
	tr := dialFake(t, b)
	if err := tr.Dispatch(ctxFor(t, 5*time.Second), outgoing("1", "2", "3", "4", "5", "6")...); err != nil {
		t.Fatalf("Dispatch = %v, want the unconfirmed messages published again", err)
	}
	var ids []string
	for _, p := range b.published() {
		ids = append(ids, p.msg.MessageId)
	}
	// 1 and 2 were confirmed on the first channel; 3 (and whatever else was
	// sent there) again on the next, in order.
	if fmt.Sprint(ids[:2]) != "[1 2]" || fmt.Sprint(ids[len(ids)-4:]) != "[3 4 5 6]" {
		t.Fatalf("published %v", ids)
	}

	t.Run("every time", func(t *testing.T) {
		b.publisher(func(ch *fakeChannel, seq uint64, p publishCall) {
			ch.fail(amqp091.PreconditionFailed, "PRECONDITION_FAILED - message too large")
		})
		before := len(b.published())
		err := tr.Dispatch(ctxFor(t, 5*time.Second), outgoing("big")...)
		if !errors.Is(err, transport.ErrConnectionLost) {
			t.Fatalf("Dispatch = %v, want ErrConnectionLost (outcome unknown)", err)
		}
		var aerr *amqp091.Error
		if !errors.As(err, &aerr) || aerr.Code != amqp091.PreconditionFailed {
			t.Fatalf("the broker's error is not reachable in %v", err)
		}
		if n := len(b.published()) - before; n != 3 {
			t.Fatalf("%d attempts, want 3", n)
		}
	})
}

func TestFaultConnectionLostDuringDispatch(t *testing.T) {
	b := newFakeBroker()
	var lost atomic.Bool
	b.publisher(func(ch *fakeChannel, seq uint64, p publishCall) {
		if p.msg.MessageId == "2" && lost.CompareAndSwap(false, true) {
			go ch.c.lose()
			return
		}
		ch.ack(seq)
	})
	tr := dialFake(t, b)
	var mu sync.Mutex
	var kinds []transport.EventKind
	stop := tr.Watch(func(e transport.Event) {
		mu.Lock()
		kinds = append(kinds, e.Kind)
		mu.Unlock()
	})
	defer stop()
	if err := tr.Dispatch(ctxFor(t, 5*time.Second), outgoing("1", "2", "3")...); err != nil {
		t.Fatalf("Dispatch = %v, want the lost messages published again after reconnecting", err)
	}
	var ids []string
	for _, p := range b.published() {
		ids = append(ids, p.msg.MessageId)
	}
	// 2 was lost with the connection and published again; 3 may have been
	// confirmed before the connection went, or published again after 2.
	if s := fmt.Sprint(ids); s != "[1 2 3 2]" && s != "[1 2 3 2 3]" && s != "[1 2 2 3]" {
		t.Fatalf("published %v", ids)
	}
	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprint(kinds) == fmt.Sprint([]transport.EventKind{transport.Disconnected, transport.Connected})
	}, func() string { return fmt.Sprint(kinds) })
}

func TestFaultOutageBoundedByContext(t *testing.T) {
	b := newFakeBroker()
	tr := dialFake(t, b)
	b.setDialErr(errDialRefused)
	for _, c := range b.conns {
		c.lose()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := tr.Dispatch(ctx, outgoing("1")...)
	if !errors.Is(err, transport.ErrConnectionLost) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dispatch during an outage = %v, want ErrConnectionLost and DeadlineExceeded", err)
	}
	if err := tr.Health(ctxFor(t, time.Second)); !errors.Is(err, transport.ErrConnectionLost) {
		t.Fatalf("Health during an outage = %v", err)
	}
	b.setDialErr(nil)
	if err := tr.Dispatch(ctxFor(t, 5*time.Second), outgoing("2")...); err != nil {
		t.Fatalf("Dispatch after the outage = %v", err)
	}
}

func TestFaultNoConfirm(t *testing.T) {
	b := newFakeBroker()
	b.publisher(func(*fakeChannel, uint64, publishCall) {}) // never confirms
	tr := dialFake(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := tr.Dispatch(ctx, outgoing("1", "2")...)
	if len(failedIndexes(t, err)) != 2 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dispatch without confirms = %v, want both messages failed with DeadlineExceeded", err)
	}

	// Close while a Dispatch waits for its confirm.
	res := make(chan error, 1)
	go func() { res <- tr.Dispatch(context.Background(), outgoing("3")...) }()
	waitFor(t, func() bool { return len(b.published()) == 3 }, func() string { return "publish" })
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-res; !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Dispatch under way at Close = %v, want ErrClosed", err)
	}
}

// TestFaultLostConfirm: amqp091 drops a notification its listener did not
// take within 5 s. The transport sees the gap in the delivery tags and
// publishes the message again rather than wait forever.
func TestFaultLostConfirm(t *testing.T) {
	b := newFakeBroker()
	var dropped atomic.Bool
	b.publisher(func(ch *fakeChannel, seq uint64, p publishCall) {
		if p.msg.MessageId == "1" && dropped.CompareAndSwap(false, true) {
			return
		}
		ch.ack(seq)
	})
	tr := dialFake(t, b)
	if err := tr.Dispatch(ctxFor(t, 5*time.Second), outgoing("1", "2")...); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range b.published() {
		ids = append(ids, p.msg.MessageId)
	}
	if fmt.Sprint(ids) != "[1 2 1]" {
		t.Fatalf("published %v, want [1 2 1]", ids)
	}
}

func TestFaultAckOnDeadChannel(t *testing.T) {
	b := newFakeBroker()
	tr := dialFake(t, b)
	got := make(chan *transport.Delivery, 10)
	c, err := tr.Consume(ctxFor(t, 5*time.Second), "q", transport.ConsumeOptions{Concurrency: 2}, func(ctx context.Context, d *transport.Delivery) {
		got <- d
	})
	if err != nil {
		t.Fatal(err)
	}
	consuming := func() *fakeChannel {
		var last *fakeChannel
		for _, ch := range b.channels() {
			ch.mu.Lock()
			if ch.consuming && !ch.closed {
				last = ch
			}
			ch.mu.Unlock()
		}
		return last
	}
	first := consuming()
	first.deliver(amqp091.Delivery{DeliveryTag: 1, MessageId: "a", Exchange: transport.DefaultDirectExchange, RoutingKey: "q"})
	d := <-got
	if d.ID != "a" || d.Queue != "q" || d.Tag != 1 {
		t.Fatalf("delivery %+v", d)
	}
	first.fail(amqp091.PreconditionFailed, "PRECONDITION_FAILED - unknown delivery tag 42")
	waitFor(t, func() bool { ch := consuming(); return ch != nil && ch != first }, func() string { return "no new channel" })
	if err := d.Ack(); !errors.Is(err, transport.ErrConnectionLost) {
		t.Fatalf("Ack on a dead channel = %v, want ErrConnectionLost", err)
	}
	second := consuming()
	second.deliver(amqp091.Delivery{DeliveryTag: 1, MessageId: "b", Redelivered: true})
	d2 := <-got
	if err := d2.Ack(); err != nil {
		t.Fatalf("Ack on the new channel = %v", err)
	}
	second.mu.Lock()
	acks := fmt.Sprint(second.acks)
	second.mu.Unlock()
	if acks != "[1]" || len(first.acks) != 0 {
		t.Fatalf("acks: first channel %v, second %v", first.acks, acks)
	}

	// A lost connection: the consumer resumes on the next one.
	second.deliver(amqp091.Delivery{DeliveryTag: 2, MessageId: "c"})
	d3 := <-got
	b.mu.Lock()
	conns := append([]*fakeConn(nil), b.conns...)
	b.mu.Unlock()
	for _, c := range conns {
		c.lose()
	}
	waitFor(t, func() bool { ch := consuming(); return ch != nil && ch != second }, func() string { return "not resumed" })
	if err := d3.Nack(true); !errors.Is(err, transport.ErrConnectionLost) {
		t.Fatalf("Nack after a lost connection = %v, want ErrConnectionLost", err)
	}
	waitFor(t, func() bool { return tr.Health(ctxFor(t, time.Second)) == nil },
		func() string { return fmt.Sprint("Health after resuming: ", tr.Health(ctxFor(t, time.Second))) })

	third := consuming()
	third.deliver(amqp091.Delivery{DeliveryTag: 1, MessageId: "d"})
	d4 := <-got
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d4.Ack(); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Ack after Close = %v, want ErrClosed", err)
	}
	if c.Err() != nil {
		t.Fatalf("Err after Close = %v", c.Err())
	}
}

func TestFaultFailoverAcrossURLs(t *testing.T) {
	b := newFakeBroker()
	var urls []string
	var mu sync.Mutex
	inner := b.dial
	failFirst := true
	dial := func(url string, cfg amqp091.Config) (amqpConn, error) {
		mu.Lock()
		urls = append(urls, url)
		fail := failFirst && url == "amqp://guest:guest@fake-1/"
		mu.Unlock()
		if fail {
			return nil, errDialRefused
		}
		return inner(url, cfg)
	}
	ctx := ctxFor(t, 5*time.Second)
	tr, err := Dial(ctx, "amqp://guest:guest@fake-1/",
		Options{ClusterURLs: []string{"amqp://guest:guest@fake-2/"}, dial: dial, ReconnectDelay: time.Millisecond, OrderedURLs: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Dispatch(ctx, outgoing("1")...); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(urls) != 4 {
		t.Fatalf("dialled %v, want each connection to try fake-1 then fake-2", urls)
	}
	// fake-1 is back; the connections to fake-2 are lost: each tries
	// fake-1 first, since fake-2 just failed it.
	failFirst = false
	urls = nil
	mu.Unlock()
	b.mu.Lock()
	conns := append([]*fakeConn(nil), b.conns...)
	b.mu.Unlock()
	for _, c := range conns {
		c.lose()
	}
	if err := tr.Dispatch(ctx, outgoing("2")...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return tr.Health(ctx) == nil }, func() string { return "not reconnected" })
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(urls) != "[amqp://guest:guest@fake-1/ amqp://guest:guest@fake-1/]" {
		t.Fatalf("reconnections dialled %v, want fake-1, the URL after the lost one, once each", urls)
	}
}

// TestFaultURLsSpread: without OrderedURLs, each transport tries the URLs
// in an order of its own, so that a service's instances spread over a
// cluster's nodes.
func TestFaultURLsSpread(t *testing.T) {
	b := newFakeBroker()
	var mu sync.Mutex
	firsts := map[string]int{}
	urls := []string{"amqp://fake-1/", "amqp://fake-2/", "amqp://fake-3/"}
	for range 30 {
		var first string
		dial := func(url string, cfg amqp091.Config) (amqpConn, error) {
			mu.Lock()
			if first == "" {
				first = url
				firsts[url]++
			}
			mu.Unlock()
			return b.dial(url, cfg)
		}
		tr, err := Dial(ctxFor(t, 5*time.Second), urls[0], Options{ClusterURLs: urls[1:], dial: dial})
		if err != nil {
			t.Fatal(err)
		}
		_ = tr.Close()
	}
	if len(firsts) != 3 {
		t.Fatalf("30 transports connected first to %v, want all three nodes used", firsts)
	}
}

func waitFor(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within 5s: %s", what())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFaultCancelWhileWriting: a Dispatch whose context ends while amqp091
// is writing its message returns only once the write is over, since its
// caller may reuse the body and headers as soon as Dispatch returns (package
// bus does).
func TestFaultCancelWhileWriting(t *testing.T) {
	b := newFakeBroker()
	entered, release := make(chan struct{}), make(chan struct{})
	b.publisher(func(ch *fakeChannel, seq uint64, _ publishCall) {
		close(entered)
		<-release
		ch.ack(seq)
	})
	tr := dialFake(t, b)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before Close, which waits for the writer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Dispatch(ctx, outgoing("m")...) }()
	<-entered
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Dispatch returned while its message was being written: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	unblock()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Dispatch = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Dispatch did not return once the write was over")
	}
}
