package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// busPikaBus runs the scenarios of a Go endpoint and a PikaBus service of
// each line on one broker, the PikaBus service started first: commands both
// ways, replies, events, deferral, requests, retries and the error queue.
// The PikaBus service is pikaPeer, which reproduces on the wire what each
// line does (see there). No scenario may loop: every message reaches the
// peer at most pikaMaxDeliveries times, and a time it cannot read counts
// as a failure.
func (s *suite) busPikaBus(t *testing.T) {
	for _, line := range []int{1, 2} {
		skip := ""
		if line == 1 && s.h.DeclareUnbound == nil {
			skip = "Harness.DeclareUnbound is not set: no way to declare a queue as PikaBus 1.x does"
		}
		s.busLeaf(t, fmt.Sprintf("V%d/Exchange", line), skip, func(e *busEnv) { s.pikaExchange(e, line) })
		failSkip := skip
		if failSkip == "" && !s.caps.delayer {
			failSkip = "the transport does not implement transport.Delayer: no delayed retries"
		}
		s.busLeaf(t, fmt.Sprintf("V%d/Failures", line), failSkip, func(e *busEnv) { s.pikaFailures(e, line) })
	}
}

// pikaOptions returns the options a Go endpoint needs to talk to peer: none
// for PikaBus 2; for PikaBus 1.x its queue in TimeFormatByQueue, so that
// what the endpoint sends it first (not a reply) is in the 1.x form.
func pikaOptions(peer *pikaPeer, opts bus.Options) bus.Options {
	if peer.line == 1 {
		opts.TimeFormatByQueue = map[string]middleware.TimeFormat{peer.queue: middleware.TimePikaBus1}
	}
	return opts
}

func (s *suite) pikaExchange(e *busEnv, line int) {
	t := e.t
	peer := e.pikaPeer(line, "py")

	// An endpoint configured for the peer: it sends first.
	b := e.bus("go", pikaOptions(peer, bus.Options{}))
	handled := make(chan busCommand, inboxCapacity)
	busHandle(e, b, func(ctx context.Context, c busCommand) error { handled <- c; return nil })
	e.start(b)

	// Send, to a queue PikaBus 1.x left unbound: no NO_ROUTE.
	e.ok(b.Send(e.ctx(), peer.queue, busCommand{ID: "send"}), "Send to the PikaBus %d service", line)
	peer.expect("send")

	// A command from the peer, handled by the Go endpoint.
	peer.send(b.Queue(), "to-go", busCommand{ID: "from-python"}, "")
	if c := wait(e.env, handled, "the peer's command in %q", b.Queue()); c.ID != "from-python" {
		t.Errorf("the Go endpoint handled %+v", c)
	}

	// Events: the peer subscribes as PikaBus does, by binding its queue.
	e.ok(e.tr.Bind(e.ctx(), peer.queue, e.topicPrefix+"pika.#"), "Bind the peer's queue")
	var evOpts []bus.SendOption
	if line == 1 {
		// Events go to whoever subscribed: a publisher to PikaBus 1.x
		// subscribers says so on the call (or in Options.TimeFormat).
		evOpts = append(evOpts, bus.WithTimeFormat(middleware.TimePikaBus1))
	}
	e.ok(b.Publish(e.ctx(), "pika.placed", busEvent{ID: "event"}, evOpts...), "Publish")
	peer.expect("event")

	// Request: the peer replies to the Go endpoint's reply queue.
	pong, err := bus.Request[busPong](e.ctx(), b, peer.queue, busPing{N: 9})
	if err != nil || pong.N != 9 {
		t.Errorf("Request to the PikaBus %d service = %+v, %v; want N 9", line, pong, err)
	}

	// Deferral.
	if s.caps.delayer {
		start := time.Now()
		e.ok(b.Defer(e.ctx(), time.Second, peer.queue, busCommand{ID: "deferred"}), "Defer")
		m := peer.expect("deferred")
		if m.at.Sub(start) < time.Second {
			t.Errorf("the deferred message reached the peer after %v, before its delay of 1s", m.at.Sub(start))
		}
	}

	// Replies from an endpoint with default options: in the form the
	// request came in, whatever the endpoint's own; a 1.x request makes
	// it warn once.
	var logs logRecords
	plain := e.bus("plain", bus.Options{Logger: slog.New(&logs)})
	busHandle(e, plain, func(ctx context.Context, p busPing) error {
		if err := plain.Reply(ctx, busPong(p)); err != nil {
			return err
		}
		// A command back to the sender's queue, also in its form.
		return plain.Send(ctx, peer.queue, busCommand{ID: fmt.Sprintf("back-%d", p.N)})
	})
	e.start(plain)
	for n := 1; n <= 2; n++ {
		id := fmt.Sprintf("ping-%d", n)
		peer.send(plain.Queue(), id, busPing{N: n}, id)
		r := peer.expect("pong")
		if got, _ := middleware.HeaderString(r.msg.Headers[middleware.DefaultHeaderNames.CorrelationID]); got != id {
			t.Errorf("reply correlation id %q, want the request's %q", got, id)
		}
		peer.expect(fmt.Sprintf("back-%d", n))
	}
	warnings := logs.count(slog.LevelWarn, "PikaBus 1.x")
	if want := map[int]int{1: 1, 2: 0}[line]; warnings != want {
		t.Errorf("%d warnings about PikaBus 1.x's time form from an endpoint with default options, want %d", warnings, want)
	}
	peer.check()
}

func (s *suite) pikaFailures(e *busEnv, line int) {
	t := e.t
	peer := e.pikaPeer(line, "py")
	backoff := middleware.LinearBackoff(500 * time.Millisecond)
	// An endpoint with default options, but its retries: a handler that
	// always fails on the peer's message.
	b := e.bus("go", bus.Options{Retry: middleware.RetryOptions{MaxRetries: middleware.Retries(2), Backoff: backoff}})
	var mu sync.Mutex
	attempts := 0
	busHandle(e, b, func(ctx context.Context, c busCommand) error {
		mu.Lock()
		attempts++
		mu.Unlock()
		return errBusBoom
	})
	e.start(b)
	peer.send(b.Queue(), "doomed", busCommand{ID: "doomed"}, "")
	failed := e.errorInbox().ack()
	mu.Lock()
	n := attempts
	mu.Unlock()
	if n != 3 {
		t.Errorf("the Go handler ran %d times, want 3 (once, then two delayed retries)", n)
	}
	n2 := middleware.DefaultHeaderNames
	for _, h := range []string{n2.TimeSent, n2.DeferredTime} {
		v, _ := middleware.HeaderString(failed.Message.Headers[h])
		if err := peer.parse(v); err != nil {
			t.Errorf("the error queue's copy of the PikaBus %d message: %s: %v", line, h, err)
		}
	}
	if r := busErrorRetries(&failed.Message); r != 3 {
		t.Errorf("the error queue's copy has ErrorRetries %d, want 3", r)
	}

	// The peer's own failure: it moves the message to the error queue
	// with PikaBus's headers; busline's replay gives it back to the peer,
	// which then handles it.
	if !s.caps.getter {
		peer.check()
		return
	}
	pyErrors := e.name("pyerror")
	e.declare(transport.Topology{Queue: transport.Queue{Name: pyErrors, Type: transport.Classic}})
	peer.failOnce("pyfail", pyErrors)
	sender := e.bus("", pikaOptions(peer, bus.Options{}))
	e.ok(sender.Send(e.ctx(), peer.queue, busCommand{ID: "pyfail"}), "Send")
	peer.waitFailed("pyfail")
	res, err := sender.ReplayErrors(e.ctx(), middleware.ReplayOptions{Queue: pyErrors})
	if err != nil || len(res.Replayed) != 1 || res.Replayed[0].SourceQueue != peer.queue {
		t.Fatalf("ReplayErrors of the peer's error queue = %+v, %v", res, err)
	}
	peer.expect("pyfail")
	peer.check()
}

// pikaMaxDeliveries bounds how often the peer takes one message: beyond it
// the scenario loops, and the peer stops the loop and fails the subtest.
const pikaMaxDeliveries = 5

// pikaPeer reproduces on the wire a Python service on PikaBus 1.x (line 1,
// the pika-based line) or 2.x (line 2, aio-pika), as read from PikaBus's
// source:
//
//   - its queue: line 1 declares it without the binding on the direct
//     exchange (Harness.DeclareUnbound), line 2 with it; both as classic
//     queues, which is what PikaBus's plain queue declare makes;
//   - its sends bind the destination first (line 1 does, and every
//     transport's Dispatch now does it for the peer) and carry PikaBus's
//     headers, with times in the line's form: "%m/%d/%Y %H:%M:%S" for 1.x,
//     isoformat() of an aware UTC time for 2.x, and ErrorRetries as
//     pika/pamqp encode a Python int (int32 for 1.x, int8 for 2.x);
//   - it reads TimeSent and DeferredTime of every delivery as the line does,
//     strictly: strptime of the 1.x form for line 1 (anything else is a
//     ValueError), datetime.fromisoformat for line 2; a time it cannot read
//     fails the delivery and requeues it, the loop PikaBus 1.x falls in;
//   - a DeferredTime in the future is bounced back to its own queue, as
//     PikaBus 1.x defers;
//   - it replies to busPing with busPong, to the ReplyToAddress with the
//     request's CorrelationId, as PikaBus's Reply does;
//   - it counts deliveries per message id.
type pikaPeer struct {
	e     *busEnv
	line  int
	queue string
	got   chan pikaDelivery

	mu       sync.Mutex
	count    map[string]int // deliveries per message id
	problems []string
	fail     map[string]string // message id to fail once → the error queue to move it to
	failed   chan string
}

// pikaDelivery is a message the peer handled.
type pikaDelivery struct {
	id  string // the command's, event's or pong's ID field, or "pong"
	msg transport.Message
	at  time.Time
}

// pikaPeer starts a peer of line on a queue named after tag.
func (e *busEnv) pikaPeer(line int, tag string) *pikaPeer {
	e.t.Helper()
	p := &pikaPeer{e: e, line: line, queue: e.name(tag), got: make(chan pikaDelivery, inboxCapacity),
		count: make(map[string]int), fail: make(map[string]string), failed: make(chan string, 4)}
	q := transport.Queue{Name: p.queue, Type: transport.Classic}
	e.remember(p.queue)
	if line == 1 {
		if err := e.h.DeclareUnbound(e.ctx(), e.t, e.tr, q); err != nil {
			e.t.Fatalf("Harness.DeclareUnbound(%q): %v", p.queue, err)
		}
	} else {
		e.declare(transport.Topology{Queue: q})
	}
	e.consume(p.queue, transport.ConsumeOptions{}, p.handle)
	e.t.Cleanup(func() {
		if e.t.Failed() {
			p.mu.Lock()
			defer p.mu.Unlock()
			for _, pr := range p.problems {
				e.t.Logf("PikaBus %d service: %s", line, pr)
			}
		}
	})
	return p
}

// timeForm returns t in the peer's line's form.
func (p *pikaPeer) timeForm(t time.Time) string {
	t = t.UTC()
	if p.line == 1 {
		return t.Format("01/02/2006 15:04:05")
	}
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02T15:04:05-07:00") // isoformat() leaves out zero microseconds
	}
	return t.Format("2006-01-02T15:04:05.000000-07:00")
}

// parse reads a time as the peer's line does, or fails as Python would.
func (p *pikaPeer) parse(s string) error {
	if p.line == 1 {
		if _, err := time.Parse("01/02/2006 15:04:05", s); err != nil {
			return fmt.Errorf("ValueError: time data %q does not match format '%%m/%%d/%%Y %%H:%%M:%%S'", s)
		}
		return nil
	}
	// datetime.fromisoformat (Python 3.11): a date, "T" or " ", a time
	// with optional fraction, an optional offset or "Z".
	for _, layout := range []string{"2006-01-02T15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999",
		"2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
		if _, err := time.Parse(layout, s); err == nil {
			return nil
		}
	}
	return fmt.Errorf("ValueError: Invalid isoformat string: %q", s)
}

// message builds what the peer publishes for body, as PikaBus does.
func (p *pikaPeer) message(id string, body any, correlationID string) transport.Message {
	n := middleware.DefaultHeaderNames
	data, err := json.Marshal(body)
	if err != nil {
		p.e.t.Fatalf("encoding %T: %v", body, err)
	}
	if correlationID == "" {
		correlationID = id + "-corr"
	}
	typ, _ := bus.TypeName(body)
	m := transport.Message{
		ID: id, CorrelationID: correlationID, ReplyTo: p.queue,
		ContentType: "application/json", ContentEncoding: "utf-8",
		Timestamp: time.Now(),
		Headers: transport.Headers{
			n.MessageID: id, n.CorrelationID: correlationID, n.TimeSent: p.timeForm(time.Now()),
			n.ReplyToAddress: p.queue, n.OriginatingAddress: p.queue, n.Intent: "command",
			n.MessageType: typ, n.ContentType: "application/json", n.ContentEncoding: "utf-8",
		},
		Body: data,
	}
	if p.line == 1 {
		m.Type = m.ContentType // early 1.x wrote the content type there
	}
	return m
}

// send publishes body to queue through the direct exchange, mandatory, as
// PikaBus's Send does (after binding the destination, which Dispatch does).
func (p *pikaPeer) send(queue, id string, body any, correlationID string) {
	p.e.t.Helper()
	m := p.message(id, body, correlationID)
	if err := p.e.tr.Dispatch(p.e.ctx(), transport.Outgoing{RoutingKey: queue, Mandatory: true, Message: m}); err != nil {
		p.e.t.Fatalf("the PikaBus %d service's Send to %q: %v", p.line, queue, err)
	}
}

// failOnce makes the peer's handler fail the first delivery of the message
// whose ID field is id: PikaBus then moves it to errorQueue.
func (p *pikaPeer) failOnce(id, errorQueue string) {
	p.mu.Lock()
	p.fail[id] = errorQueue
	p.mu.Unlock()
}

func (p *pikaPeer) problem(format string, args ...any) {
	p.mu.Lock()
	p.problems = append(p.problems, fmt.Sprintf(format, args...))
	p.mu.Unlock()
}

func (p *pikaPeer) handle(ctx context.Context, d *transport.Delivery) {
	n := middleware.DefaultHeaderNames
	m := d.Message
	p.mu.Lock()
	p.count[m.ID]++
	count := p.count[m.ID]
	p.mu.Unlock()
	if count > pikaMaxDeliveries {
		p.problem("message %q delivered %d times: a loop", m.ID, count)
		_ = d.Nack(false)
		return
	}
	var due time.Time
	for _, h := range []string{n.TimeSent, n.DeferredTime} {
		v, present := m.Headers[h]
		if !present {
			continue
		}
		s, _ := middleware.HeaderString(v)
		if err := p.parse(s); err != nil {
			p.problem("message %q, header %s: %v", m.ID, h, err)
			_ = d.Nack(true) // PikaBus's handling failed: requeued
			return
		}
		if h == n.DeferredTime {
			due, _ = middleware.ParseTime(s)
		}
	}
	if due.After(time.Now()) {
		// PikaBus 1.x defers by sending the message back to its queue.
		if err := p.e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: p.queue, Mandatory: true, Message: m}); err != nil {
			_ = d.Nack(true)
			return
		}
		_ = d.Ack()
		return
	}
	var body struct {
		ID string
		N  int
	}
	_ = json.Unmarshal(m.Body, &body)
	typ, _ := middleware.HeaderString(m.Headers[n.MessageType])
	id := body.ID
	switch typ {
	case busTypeName(p.e, busPing{}):
		replyTo, _ := middleware.HeaderString(m.Headers[n.ReplyToAddress])
		corr, _ := middleware.HeaderString(m.Headers[n.CorrelationID])
		reply := p.message(fmt.Sprintf("pong-%s", m.ID), busPong{N: body.N}, corr)
		if err := p.e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: replyTo, Mandatory: true, Message: reply}); err != nil {
			p.problem("the peer's reply to %q: %v", replyTo, err)
		}
		_ = d.Ack()
		return
	case busTypeName(p.e, busPong{}):
		id = "pong"
	}
	p.mu.Lock()
	errorQueue, fail := p.fail[id]
	delete(p.fail, id)
	p.mu.Unlock()
	if fail {
		out := m.Clone()
		out.Headers[n.ErrorDetails] = "Traceback (most recent call last):\n  ...\nRuntimeError: python handler failure\n"
		out.Headers[n.SourceQueue] = p.queue
		if p.line == 1 {
			out.Headers[n.ErrorRetries] = int32(1)
		} else {
			out.Headers[n.ErrorRetries] = int8(1)
		}
		if err := p.e.tr.Dispatch(ctx, transport.Outgoing{RoutingKey: errorQueue, Mandatory: true, Message: out}); err != nil {
			p.problem("the peer's forward to its error queue: %v", err)
			_ = d.Nack(true)
			return
		}
		_ = d.Ack()
		p.failed <- id
		return
	}
	_ = d.Ack()
	p.got <- pikaDelivery{id: id, msg: m, at: time.Now()}
}

// expect waits for the peer to handle the message whose ID is id (or a
// pong, for "pong") and returns it; messages handled meanwhile fail.
func (p *pikaPeer) expect(id string) pikaDelivery {
	p.e.t.Helper()
	d := wait(p.e.env, p.got, "the PikaBus %d service to handle %q", p.line, id)
	if d.id != id {
		p.e.t.Errorf("the PikaBus %d service handled %q, want %q next", p.line, d.id, id)
	}
	return d
}

func (p *pikaPeer) waitFailed(id string) {
	p.e.t.Helper()
	if got := wait(p.e.env, p.failed, "the PikaBus %d service to fail %q", p.line, id); got != id {
		p.e.t.Errorf("the PikaBus %d service failed %q, want %q", p.line, got, id)
	}
}

// check fails the subtest with what the peer could not read or saw too
// often.
func (p *pikaPeer) check() {
	p.e.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.problems {
		p.e.t.Errorf("PikaBus %d service: %s", p.line, pr)
	}
	for id, n := range p.count {
		if n > 2 {
			p.e.t.Errorf("PikaBus %d service: message %q delivered %d times", p.line, id, n)
		}
	}
}

// logRecords is a slog.Handler that keeps the records logged through it.
type logRecords struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.records = append(l.records, r.Clone())
	l.mu.Unlock()
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

// count returns how many records of level mention s.
func (l *logRecords) count(level slog.Level, s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.records {
		if r.Level == level && strings.Contains(r.Message, s) {
			n++
		}
	}
	return n
}
