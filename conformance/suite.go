package conformance

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/busline/busline/transport"
)

// suite is one run of a Run… function: the harness with its defaults and
// what the probe transport revealed.
type suite struct {
	h    Harness
	caps capabilities
	// root is the name of the test the suite runs in, so that a subtest's
	// name relative to it can be looked up in Harness.Unsupported.
	root string
}

// capabilities records which optional interfaces the transport implements.
type capabilities struct {
	delayer, inspector, getter, deleter, watcher, health, async, exchanges bool
}

func capabilitiesOf(tr transport.Transport) capabilities {
	_, d := tr.(transport.Delayer)
	_, i := tr.(transport.Inspector)
	_, g := tr.(transport.Getter)
	_, q := tr.(transport.QueueDeleter)
	_, w := tr.(transport.Watcher)
	_, hc := tr.(transport.HealthChecker)
	_, ad := tr.(transport.AsyncDispatcher)
	_, x := tr.(transport.ExchangeBinder)
	return capabilities{delayer: d, inspector: i, getter: g, deleter: q, watcher: w, health: hc, async: ad, exchanges: x}
}

func (c capabilities) String() string {
	var have []string
	for _, x := range []struct {
		ok   bool
		name string
	}{
		{c.delayer, "Delayer"}, {c.inspector, "Inspector"}, {c.getter, "Getter"},
		{c.deleter, "QueueDeleter"}, {c.watcher, "Watcher"}, {c.health, "HealthChecker"},
		{c.async, "AsyncDispatcher"}, {c.exchanges, "ExchangeBinder"},
	} {
		if x.ok {
			have = append(have, x.name)
		}
	}
	if len(have) == 0 {
		return "none"
	}
	return strings.Join(have, ", ")
}

// newSuite checks the harness and opens, inspects and closes one transport
// to learn its capabilities, so that subtests needing a missing one skip
// before they start.
func newSuite(t *testing.T, h Harness) *suite {
	t.Helper()
	if h.New == nil {
		t.Fatal("conformance: Harness.New is nil")
	}
	s := &suite{h: h.withDefaults(), root: t.Name()}
	ctx, cancel := context.WithTimeout(context.Background(), s.h.Timeout)
	defer cancel()
	tr, err := s.h.New(ctx, t)
	if err != nil {
		t.Fatalf("Harness.New: %v", err)
	}
	if tr == nil {
		t.Fatal("Harness.New returned a nil transport and no error")
	}
	s.caps = capabilitiesOf(tr)
	t.Logf("transport %T; optional capabilities: %s", tr, s.caps)
	if err := closeBounded(tr, s.h.Timeout); err != nil {
		t.Fatalf("closing the probe transport: %v", err)
	}
	return s
}

// group runs body as a subtest whose leaves run in parallel with each
// other; group returns when all of them have finished.
func (s *suite) group(t *testing.T, name string, body func(t *testing.T)) {
	t.Helper()
	t.Run(name, body)
}

// namedGroup is a group of subtests for [suite.groups].
type namedGroup struct {
	name string
	body func(t *testing.T)
}

// groups runs first as a group, alone, then every group of rest at once,
// so that the leaves of all of them run in parallel (within the -parallel
// limit), and returns when all have finished. Leaves wait mostly for a
// broker, so a suite takes about as long as its slowest leaf, not the sum
// of each group's slowest. first runs alone because its goroutine check
// needs the process to itself.
func (s *suite) groups(t *testing.T, first namedGroup, rest ...namedGroup) {
	t.Helper()
	s.group(t, first.name, first.body)
	var wg sync.WaitGroup
	for _, g := range rest {
		wg.Go(func() { s.group(t, g.name, g.body) })
	}
	wg.Wait()
}

// leaf runs body as a parallel subtest with a fresh transport of its own,
// inside the harness's bubble if it has one.
func (s *suite) leaf(t *testing.T, name string, body func(e *env)) {
	t.Helper()
	s.leafUnless(t, name, "", body)
}

// leafUnless is leaf, except that a non-empty skip skips the subtest with
// that reason before it opens a transport (a skip inside a bubble would be
// reported as a pass).
func (s *suite) leafUnless(t *testing.T, name, skip string, body func(e *env)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		if skip != "" {
			t.Skip(skip)
		}
		if reason := s.unsupported(t); reason != "" {
			t.Skip(reason)
		}
		t.Parallel()
		s.inBubble(t, func(t *testing.T) { body(s.open(t)) })
	})
}

// serialLeaf is leaf without t.Parallel, for subtests that need the process
// to themselves (the goroutine check).
func (s *suite) serialLeaf(t *testing.T, name string, body func(t *testing.T)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		if reason := s.unsupported(t); reason != "" {
			t.Skip(reason)
		}
		s.inBubble(t, body)
	})
}

// unsupported returns the reason Harness.Unsupported gives for subtest t or
// a group it belongs to, or "".
func (s *suite) unsupported(t *testing.T) string {
	rel := strings.TrimPrefix(t.Name(), s.root+"/")
	for {
		if reason, ok := s.h.Unsupported[rel]; ok {
			return "declared unsupported by the harness: " + reason
		}
		i := strings.LastIndexByte(rel, '/')
		if i < 0 {
			return ""
		}
		rel = rel[:i]
	}
}

// lacks returns the reason to skip a subtest that needs the optional
// interface iface, or "" if the transport has it (ok).
func lacks(ok bool, iface string) string {
	if ok {
		return ""
	}
	return "the transport does not implement transport." + iface
}

func (s *suite) inBubble(t *testing.T, body func(t *testing.T)) {
	if s.h.Bubble == nil {
		body(t)
		return
	}
	s.h.Bubble(t, body)
}

// env is one subtest's view of the suite: its transport, its unique names,
// its bounded waits and what it must clean up.
type env struct {
	t  *testing.T
	s  *suite
	h  *Harness
	tr transport.Transport
	id string

	mu     sync.Mutex
	queues []string
	seq    int
	closed bool
}

// open creates the subtest's transport and registers its cleanup: consumers
// first (registered later, so run earlier), then the subtest's queues, then
// the transport.
func (s *suite) open(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, s: s, h: &s.h, id: fmt.Sprintf("%08x", rand.Uint32())}
	e.tr = e.newTransport()
	tr := e.tr
	t.Cleanup(func() {
		if err := closeBounded(tr, s.h.Timeout); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	t.Cleanup(e.deleteQueues)
	return e
}

// newTransport calls the harness for another transport, which the caller
// must close.
func (e *env) newTransport() transport.Transport {
	e.t.Helper()
	tr, err := e.h.New(e.ctx(), e.t)
	if err != nil {
		e.t.Fatalf("Harness.New: %v", err)
	}
	if tr == nil {
		e.t.Fatal("Harness.New returned a nil transport and no error")
	}
	return tr
}

// ctx returns a context that ends after the harness's timeout.
func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), e.h.Timeout)
	e.t.Cleanup(cancel)
	return ctx
}

// name returns a queue name unique to this subtest, ending in tag.
func (e *env) name(tag string) string {
	return e.h.QueuePrefix + "." + e.id + "." + tag
}

// nameOfLength returns a queue name unique to this subtest of exactly n
// bytes (n must leave room for the prefix and the id).
func (e *env) nameOfLength(n int) string {
	base := e.name("")
	if len(base) > n {
		e.t.Fatalf("QueuePrefix %q is too long for a name of %d bytes", e.h.QueuePrefix, n)
	}
	return base + strings.Repeat("n", n-len(base))
}

// declare declares topo, failing the subtest on error, and remembers the
// queue for deletion.
func (e *env) declare(topo transport.Topology) {
	e.t.Helper()
	e.remember(topo.Queue.Name)
	if err := e.tr.Declare(e.ctx(), topo); err != nil {
		e.t.Fatalf("Declare(%q): %v", topo.Queue.Name, err)
	}
}

// queue declares a queue of the harness's type named after tag, bound under
// topics, and returns its name.
func (e *env) queue(tag string, topics ...string) string {
	e.t.Helper()
	q := e.name(tag)
	e.declare(transport.Topology{Queue: transport.Queue{Name: q, Type: e.h.QueueType}, Topics: topics})
	return q
}

// remember records a queue the subtest may have created, to delete it at
// the end.
func (e *env) remember(queue string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.queues = append(e.queues, queue)
}

// deleteQueues deletes the subtest's queues if the transport can. When the
// subtest closed its transport, a fresh one does it.
func (e *env) deleteQueues() {
	e.mu.Lock()
	queues, closed := e.queues, e.closed
	e.mu.Unlock()
	if len(queues) == 0 || !e.s.caps.deleter {
		return
	}
	tr := e.tr
	if closed {
		ctx, cancel := context.WithTimeout(context.Background(), e.h.Timeout)
		fresh, err := e.h.New(ctx, e.t)
		cancel()
		if err != nil || fresh == nil {
			e.t.Logf("cleanup: cannot open a transport to delete the subtest's queues: %v", err)
			return
		}
		defer func() {
			if err := closeBounded(fresh, e.h.Timeout); err != nil {
				e.t.Logf("cleanup: %v", err)
			}
		}()
		tr = fresh
	}
	del, ok := tr.(transport.QueueDeleter)
	if !ok {
		return
	}
	for _, q := range queues {
		ctx, cancel := context.WithTimeout(context.Background(), e.h.Timeout)
		if err := del.DeleteQueue(ctx, q); err != nil {
			e.t.Logf("cleanup: DeleteQueue(%q): %v", q, err)
		}
		cancel()
	}
}

// closeTransport closes the subtest's transport, failing the subtest if
// that fails or blocks.
func (e *env) closeTransport() {
	e.t.Helper()
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	if err := closeBounded(e.tr, e.h.Timeout); err != nil {
		e.t.Errorf("Close: %v", err)
	}
}

// closeBounded closes tr and reports an error if that fails or takes longer
// than timeout.
func closeBounded(tr transport.Transport, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- tr.Close() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		//lint:ignore ST1005 the error begins with the method's name
		return fmt.Errorf("Close did not return within %v", timeout)
	}
}

// consume starts a consumer, failing the subtest on error, and closes it
// at the end of the subtest.
func (e *env) consume(queue string, opts transport.ConsumeOptions, h transport.Handler) transport.Consumer {
	e.t.Helper()
	c, err := e.tr.Consume(e.ctx(), queue, opts, h)
	if err != nil {
		e.t.Fatalf("Consume(%q): %v", queue, err)
	}
	if c == nil {
		e.t.Fatalf("Consume(%q) returned a nil consumer and no error", queue)
	}
	e.t.Cleanup(func() {
		if err := e.bounded("Consumer.Close", c.Close); err != nil {
			e.t.Errorf("cleanup: %v", err)
		}
	})
	return c
}

// bounded runs f and waits for it at most the harness's timeout; the error
// names what did not return.
func (e *env) bounded(what string, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	timer := time.NewTimer(e.h.Timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		return fmt.Errorf("%s did not return within %v", what, e.h.Timeout)
	}
}

// dispatch dispatches msgs and fails the subtest on error.
func (e *env) dispatch(msgs ...transport.Outgoing) {
	e.t.Helper()
	if err := e.tr.Dispatch(e.ctx(), msgs...); err != nil {
		e.t.Fatalf("Dispatch: %v", err)
	}
}

// msg returns a message whose ID is id and whose body names it.
func msg(id string) transport.Message {
	return transport.Message{ID: id, Body: []byte("body of " + id)}
}

// direct returns mandatory direct messages to queue with the given IDs.
func direct(queue string, ids ...string) []transport.Outgoing {
	out := make([]transport.Outgoing, len(ids))
	for i, id := range ids {
		out[i] = transport.Outgoing{Exchange: transport.Direct, RoutingKey: queue, Mandatory: true, Message: msg(id)}
	}
	return out
}

// send dispatches mandatory direct messages with the given IDs to queue.
func (e *env) send(queue string, ids ...string) {
	e.t.Helper()
	e.dispatch(direct(queue, ids...)...)
}

// marker sends a message to queue that shows, when it arrives, that every
// message enqueued before it has been delivered; it returns its ID.
func (e *env) marker(queue string) string {
	e.t.Helper()
	e.mu.Lock()
	e.seq++
	id := fmt.Sprintf("marker-%d", e.seq)
	e.mu.Unlock()
	e.send(queue, id)
	return id
}

// wait waits for ch to be closed or to yield a value, at most the harness's
// timeout, and fails the subtest with what otherwise.
func wait[T any](e *env, ch <-chan T, what string, args ...any) T {
	e.t.Helper()
	timer := time.NewTimer(e.h.Timeout)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		e.t.Fatalf("timed out after %v waiting for %s", e.h.Timeout, fmt.Sprintf(what, args...))
	}
	panic("unreachable")
}

// quiet reports whether ch stays silent for the harness's quiet period.
func quiet[T any](e *env, ch <-chan T) (v T, silent bool) {
	timer := time.NewTimer(e.h.QuietPeriod)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v, false
	case <-timer.C:
		return v, true
	}
}

// inbox is a consumer whose handler hands every delivery, unsettled, to the
// test goroutine.
type inbox struct {
	e     *env
	queue string
	ch    chan *transport.Delivery
	c     transport.Consumer
}

// inboxCapacity bounds how many deliveries an inbox holds; the suite never
// sends more to one queue.
const inboxCapacity = 1024

// inbox starts a consumer of queue with opts (zero values: prefetch 256).
func (e *env) inbox(queue string, opts transport.ConsumeOptions) *inbox {
	e.t.Helper()
	if opts.Prefetch == 0 && opts.Concurrency == 0 {
		opts.Prefetch = 256
	}
	in := &inbox{e: e, queue: queue, ch: make(chan *transport.Delivery, inboxCapacity)}
	in.c = e.consume(queue, opts, func(ctx context.Context, d *transport.Delivery) {
		select {
		case in.ch <- d:
		case <-ctx.Done():
		}
	})
	return in
}

// next returns the next delivery, unsettled.
func (in *inbox) next() *transport.Delivery {
	in.e.t.Helper()
	return wait(in.e, in.ch, "a delivery from queue %q", in.queue)
}

// ack returns the next delivery after acking it.
func (in *inbox) ack() *transport.Delivery {
	in.e.t.Helper()
	d := in.next()
	if err := d.Ack(); err != nil {
		in.e.t.Errorf("Ack of message %q from %q: %v", d.ID, in.queue, err)
	}
	return d
}

// expect receives and acks len(ids) deliveries and checks that they are
// the messages ids, in that order.
func (in *inbox) expect(ids ...string) []*transport.Delivery {
	in.e.t.Helper()
	var got []*transport.Delivery
	for _, id := range ids {
		d := in.ack()
		got = append(got, d)
		if d.ID != id {
			in.e.t.Fatalf("queue %q delivered message %q, want %q (delivered so far: %s)", in.queue, d.ID, id, ids2(got))
		}
	}
	return got
}

// drainTo sends a marker and receives and acks everything up to it,
// returning the IDs received before the marker.
func (in *inbox) drainTo() []string {
	in.e.t.Helper()
	m := in.e.marker(in.queue)
	var ids []string
	for {
		d := in.ack()
		if d.ID == m {
			return ids
		}
		ids = append(ids, d.ID)
	}
}

// empty checks that nothing is left in the queue: the next delivery is a
// marker sent now.
func (in *inbox) empty(why string) {
	in.e.t.Helper()
	if ids := in.drainTo(); len(ids) > 0 {
		in.e.t.Errorf("%s: queue %q still delivered %q", why, in.queue, ids)
	}
}

// silent checks that no delivery arrives within the quiet period.
func (in *inbox) silent(why string) {
	in.e.t.Helper()
	if d, ok := quiet(in.e, in.ch); !ok {
		in.e.t.Errorf("%s: queue %q delivered message %q (redelivered %v)", why, in.queue, d.ID, d.Redelivered)
	}
}

func ids2(ds []*transport.Delivery) string {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	return fmt.Sprintf("%q", ids)
}

// is checks that err wraps target, reporting what was called otherwise.
func is(t *testing.T, err, target error, call string, args ...any) bool {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s = %v, want an error wrapping %v", fmt.Sprintf(call, args...), err, target)
		return false
	}
	return true
}

// dispatchErrors returns the DispatchErrors in err's tree (errors.Join
// nests them), in order.
func dispatchErrors(err error) []*transport.DispatchError {
	var out []*transport.DispatchError
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if de, ok := err.(*transport.DispatchError); ok {
			out = append(out, de)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// get returns the next message of queue through the transport's Getter,
// polling until one is there (a message may reach a queue asynchronously);
// it fails the subtest if none comes or Get fails.
func (e *env) get(queue string) *transport.Delivery {
	e.t.Helper()
	g := e.tr.(transport.Getter)
	var d *transport.Delivery
	var ok bool
	var err error
	if !poll(e, func() bool {
		d, ok, err = g.Get(e.ctx(), queue)
		return err != nil || ok
	}) || err != nil {
		e.t.Fatalf("Get(%q) = %v, %v; want a message", queue, ok, err)
	}
	return d
}
