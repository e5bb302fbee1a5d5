// Command pikabus-interop checks, against a live Python PikaBus 2 service
// (pysvc.py next to it, started by scripts/pikabus-interop.sh), that busline
// and PikaBus share one RabbitMQ broker: commands, replies, requests,
// events, deferral, retries, the error queue and its replay, both ways.
//
// It is a manual check, not part of make test: CI cannot fetch PikaBus. It
// prints each check as PASS or FAIL, then every message that crossed the
// shared exchanges as it was on the wire (a tap queue bound beside the
// endpoints' queues), and exits 1 if a check failed.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// Queue names: the Python service's and the Go endpoints'.
const (
	pyQueue      = "py.interop"
	goQueue      = "go.interop"
	goUntyped    = "go.default"
	tapQueue     = "interop.tap"
	directEx     = "PikaBusDirect"
	topicEx      = "PikaBusTopic"
	pyEventTopic = "interop.py.shipped"
	goEventTopic = "interop.go.created"
)

// Order is what both sides send each other; its type name is shared.
type Order struct {
	OrderID  string `json:"order_id"`
	Quantity int    `json:"quantity"`
}

// MessageType names Order on the wire.
func (Order) MessageType() string { return "interop.Order" }

// Accepted is the Go endpoint's reply to an Order from Python.
type Accepted struct {
	OrderID string `json:"order_id"`
}

// MessageType names Accepted on the wire.
func (Accepted) MessageType() string { return "interop.Accepted" }

// Fail is a command whose Go handler fails until healed.
type Fail struct {
	Key string `json:"key"`
}

// MessageType names Fail on the wire.
func (Fail) MessageType() string { return "interop.Fail" }

// Ctl tells the Python service what to do (see pysvc.py).
type Ctl struct {
	Action    string `json:"action"`
	Key       string `json:"key,omitempty"`
	Queue     string `json:"queue,omitempty"`
	Topic     string `json:"topic,omitempty"`
	Seconds   int    `json:"seconds,omitempty"`
	MType     string `json:"messageType,omitempty"`
	ReplyType string `json:"replyType,omitempty"`
	Max       int    `json:"max,omitempty"`
	Body      any    `json:"body,omitempty"`
}

// MessageType names Ctl on the wire.
func (Ctl) MessageType() string { return "interop.Ctl" }

// Echo is the Python service's reply to an "echo" Ctl.
type Echo struct {
	Echo Ctl `json:"echo"`
}

// MessageType names Echo on the wire.
func (Echo) MessageType() string { return "interop.Echo" }

// seen is a message a Go handler took.
type seen struct {
	queue, handler string
	in             bus.Incoming
	headers        map[string]any
	body           string
	at             time.Time
}

type recorder struct {
	mu   sync.Mutex
	msgs []seen
	more chan struct{}
}

func (r *recorder) add(ctx context.Context, queue, handler string) {
	in, _ := bus.IncomingFrom(ctx)
	s := seen{queue: queue, handler: handler, in: in, at: time.Now()}
	if in.Message != nil {
		s.headers = map[string]any{}
		for k, v := range in.Message.Headers {
			s.headers[k] = v
		}
		s.body = string(in.Message.Body)
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, s)
	close(r.more)
	r.more = make(chan struct{})
	r.mu.Unlock()
}

// wait returns the first message pred accepts, waiting up to d for it.
func (r *recorder) wait(d time.Duration, pred func(seen) bool) (seen, bool) {
	deadline := time.After(d)
	for {
		r.mu.Lock()
		for _, m := range r.msgs {
			if pred(m) {
				r.mu.Unlock()
				return m, true
			}
		}
		more := r.more
		r.mu.Unlock()
		select {
		case <-more:
		case <-deadline:
			return seen{}, false
		}
	}
}

func (r *recorder) count(pred func(seen) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if pred(m) {
			n++
		}
	}
	return n
}

// pyEntry is a line of the Python service's log.
type pyEntry map[string]any

func (e pyEntry) payload() map[string]any { m, _ := e["payload"].(map[string]any); return m }
func (e pyEntry) header(k string) (typ string, val any) {
	h, _ := e["headers"].(map[string]any)
	v, _ := h["PikaBus."+k].(map[string]any)
	if v == nil {
		return "", nil
	}
	t, _ := v["type"].(string)
	return t, v["value"]
}
func (e pyEntry) parsed(k string) any { p, _ := e["parsed"].(map[string]any); return p[k] }
func (e pyEntry) prop(k string) any   { p, _ := e["properties"].(map[string]any); return p[k] }
func (e pyEntry) received() time.Time {
	s, _ := e["received"].(string)
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

func readPy(path string) []pyEntry {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []pyEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e pyEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// waitPy returns the first entry of the Python log pred accepts, waiting up
// to d for it.
func waitPy(path string, d time.Duration, pred func(pyEntry) bool) (pyEntry, bool) {
	deadline := time.Now().Add(d)
	for {
		for _, e := range readPy(path) {
			if pred(e) {
				return e, true
			}
		}
		if time.Now().After(deadline) {
			return nil, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func countPy(path string, pred func(pyEntry) bool) int {
	n := 0
	for _, e := range readPy(path) {
		if pred(e) {
			n++
		}
	}
	return n
}

var failures int

func check(name string, ok bool, detail string, args ...any) {
	status := "PASS"
	if !ok {
		status = "FAIL"
		failures++
	}
	fmt.Printf("%s  %s", status, name)
	if detail != "" {
		fmt.Printf(": %s", fmt.Sprintf(detail, args...))
	}
	fmt.Println()
}

// pikaLine is the PikaBus line the Python service runs (-line).
var pikaLine int

// pikaOptions configures a Go endpoint for the Python service's line: a
// PikaBus 1.x service reads only its own time form, so what the endpoint
// sends it first (not a reply) names its queue in TimeFormatByQueue.
func pikaOptions(o bus.Options) bus.Options {
	if pikaLine == 1 {
		o.TimeFormatByQueue = map[string]middleware.TimeFormat{pyQueue: middleware.TimePikaBus1}
	}
	return o
}

// eventOptions are the options of a Publish the Python service subscribes
// to: events take the 1.x form from the call.
func eventOptions(opts ...bus.SendOption) []bus.SendOption {
	if pikaLine == 1 {
		opts = append(opts, bus.WithTimeFormat(middleware.TimePikaBus1))
	}
	return opts
}

func main() {
	url := flag.String("amqp", "amqp://guest:guest@localhost:5672/", "the broker the Python service uses")
	pyLog := flag.String("pylog", "", "the Python service's log (PY_LOG)")
	verbose := flag.Bool("v", false, "log busline's endpoint events")
	cleanup := flag.Bool("cleanup", false, "delete the check's endpoint queues and exit (run it once the Python service stopped)")
	flag.IntVar(&pikaLine, "line", 2, "the PikaBus line of the Python service: 2 (aio-pika, pysvc.py) or 1 (pika, pysvc1.py)")
	flag.Parse()
	if pikaLine != 1 && pikaLine != 2 {
		fmt.Fprintln(os.Stderr, "pikabus-interop: -line must be 1 or 2")
		os.Exit(2)
	}
	if *cleanup {
		if err := deleteQueues(*url, pyQueue, goQueue, goUntyped); err != nil {
			fmt.Fprintln(os.Stderr, "pikabus-interop: cleanup:", err)
			os.Exit(2)
		}
		return
	}
	if *pyLog == "" {
		fmt.Fprintln(os.Stderr, "pikabus-interop: -pylog is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, *url, *pyLog, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "pikabus-interop:", err)
		os.Exit(2)
	}
	if failures > 0 {
		fmt.Printf("\n%d checks failed\n", failures)
		os.Exit(1)
	}
	fmt.Println("\nall checks passed")
}

func run(ctx context.Context, url, pyLog string, verbose bool) error {
	raw, err := amqp091.Dial(url)
	if err != nil {
		return err
	}
	defer raw.Close()
	if err := tap(raw); err != nil {
		return err
	}

	var logger *slog.Logger
	if verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	t, err := amqp.Dial(ctx, url, amqp.Options{ConnectionName: "pikabus-interop", Logger: logger})
	if err != nil {
		return err
	}
	defer t.Close()

	oneSecond := middleware.LinearBackoff(time.Second)
	rec := &recorder{more: make(chan struct{})}
	healed := sync.Map{}
	gb, err := bus.New(t, goQueue, pikaOptions(bus.Options{
		Subscriptions: []string{"interop.py.#"},
		Retry:         middleware.RetryOptions{MaxRetries: middleware.Retries(2), Backoff: oneSecond},
		Logger:        logger,
	}))
	if err != nil {
		return err
	}
	bus.Handle(gb, func(ctx context.Context, o Order) error {
		rec.add(ctx, goQueue, "Order")
		if in, _ := bus.IncomingFrom(ctx); in.ReplyTo == pyQueue && in.Intent == "command" {
			return gb.Reply(ctx, Accepted{OrderID: o.OrderID})
		}
		return nil
	})
	bus.Handle(gb, func(ctx context.Context, f Fail) error {
		rec.add(ctx, goQueue, "Fail")
		if _, ok := healed.Load(f.Key); ok {
			return nil
		}
		return fmt.Errorf("go handler failure for %s", f.Key)
	})
	gb.HandleFallback(func(ctx context.Context, m *transport.Message) error {
		rec.add(ctx, goQueue, "fallback")
		return nil
	})
	db, err := bus.New(t, goUntyped, bus.Options{DefaultMessageType: Order{}.MessageType(), Logger: logger})
	if err != nil {
		return err
	}
	bus.Handle(db, func(ctx context.Context, o Order) error {
		rec.add(ctx, goUntyped, "Order")
		return nil
	})
	for _, b := range []*bus.Bus{gb, db} {
		if err := b.Start(ctx); err != nil {
			return fmt.Errorf("start %s: %w", b.Queue(), err)
		}
		defer b.Shutdown(context.WithoutCancel(ctx))
	}

	// Each run uses fresh keys, so that a log of an earlier run never
	// satisfies a check.
	run := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	key := func(s string) string { return s + "-" + run }
	toPy := func(c Ctl) error { return gb.Send(ctx, pyQueue, c) }
	const wait = 20 * time.Second

	fmt.Println("== 1. Python sends a command to a Go endpoint; Go replies")
	for _, typed := range []bool{true, false} {
		id := key("s1-untyped")
		mt := ""
		if typed {
			id, mt = key("s1-typed"), Order{}.MessageType()
		}
		if err := toPy(Ctl{Action: "send", Queue: goQueue, MType: mt, Body: Order{OrderID: id, Quantity: 3}}); err != nil {
			return err
		}
		pred := func(s seen) bool { return strings.Contains(s.body, id) }
		m, ok := rec.wait(wait, pred)
		if typed {
			check("typed handler took Python's Send with messageType", ok && m.handler == "Order", "handler %q", m.handler)
		} else {
			check("untyped Python Send reached the fallback handler", ok && m.handler == "fallback", "handler %q", m.handler)
			// The same, to an endpoint whose DefaultMessageType names it.
			if err := toPy(Ctl{Action: "send", Queue: goUntyped, Body: Order{OrderID: id + "-default", Quantity: 1}}); err != nil {
				return err
			}
			dm, dok := rec.wait(wait, func(s seen) bool { return strings.Contains(s.body, id+"-default") })
			check("untyped Python Send taken by DefaultMessageType's typed handler", dok && dm.queue == goUntyped && dm.handler == "Order", "%q on %q", dm.handler, dm.queue)
		}
		if !ok {
			continue
		}
		in := m.in
		check("  Incoming from Python", in.MessageID != "" && in.CorrelationID != "" && in.Intent == "command" &&
			in.ReplyTo == pyQueue && in.OriginatingAddress == pyQueue && !in.TimeSent.IsZero() && in.MessageType == mt,
			"id %s corr %s intent %s replyTo %s origin %s type %q timeSent %s (%s ago)", in.MessageID, in.CorrelationID, in.Intent,
			in.ReplyTo, in.OriginatingAddress, in.MessageType, in.TimeSent.Format(time.RFC3339Nano), time.Since(in.TimeSent).Round(time.Millisecond))
		if typed {
			e, ok := waitPy(pyLog, wait, func(e pyEntry) bool { return e.payload()["order_id"] == id && e.payload()["quantity"] == nil })
			_, corr := e.header("CorrelationId")
			_, mtype := e.header("MessageType")
			check("  Python received Go's Reply", ok && corr == in.CorrelationID && mtype == "interop.Accepted" &&
				!strings.HasPrefix(fmt.Sprint(e.parsed("TimeSent")), "ERROR") && e.prop("type") == "interop.Accepted",
				"CorrelationId %v (want %s), MessageType %v, type property %v, TimeSent parsed by PikaBus %v", corr, in.CorrelationID, mtype, e.prop("type"), e.parsed("TimeSent"))
		}
	}

	fmt.Println("\n== 2. Go sends, requests and publishes to a Python endpoint")
	{
		id := key("s2-send")
		if err := gb.Send(ctx, pyQueue, Ctl{Action: "record", Key: id}); err != nil {
			return err
		}
		e, ok := waitPy(pyLog, wait, func(e pyEntry) bool { return e.payload()["key"] == id })
		pyChecks(ok, e, "command", goQueue)

		rctx, rcancel := context.WithTimeout(ctx, wait)
		echo, err := bus.Request[Echo](rctx, gb, pyQueue, Ctl{Action: "echo", Key: key("s2-request"), ReplyType: Echo{}.MessageType()})
		rcancel()
		check("Request to Python answered by PikaBus's Reply", err == nil && echo.Echo.Key == key("s2-request"), "reply %+v, error %v", echo, err)

		id = key("s2-event")
		if err := gb.Publish(ctx, goEventTopic, Ctl{Action: "record", Key: id}, eventOptions(bus.WithRequireSubscriber(true))...); err != nil {
			return err
		}
		e, ok = waitPy(pyLog, wait, func(e pyEntry) bool { return e.payload()["key"] == id })
		pyChecks(ok, e, "event", goQueue)

		id = key("s2-pyevent")
		if err := toPy(Ctl{Action: "publish", Topic: pyEventTopic, MType: Order{}.MessageType(), Body: Order{OrderID: id}}); err != nil {
			return err
		}
		m, ok := rec.wait(wait, func(s seen) bool { return strings.Contains(s.body, id) })
		check("Python's Publish reached the Go subscriber's typed handler", ok && m.handler == "Order" && m.in.Intent == "event", "handler %q intent %q", m.handler, m.in.Intent)
	}

	fmt.Println("\n== 3. Deferral both ways")
	{
		const delay = 4 * time.Second
		id := key("s3-go-defer")
		sent := time.Now()
		if err := gb.Defer(ctx, delay, pyQueue, Ctl{Action: "record", Key: id}); err != nil {
			return err
		}
		e, ok := waitPy(pyLog, wait, func(e pyEntry) bool { return e.payload()["key"] == id })
		took := e.received().Sub(sent)
		check("Go's Defer reached Python when due", ok && took >= delay-time.Second && took < delay+3*time.Second,
			"after %s (delay %s), DeferredTime parsed by PikaBus %v", took.Round(time.Millisecond), delay, e.parsed("DeferredTime"))
		time.Sleep(2 * time.Second)
		n := countPy(pyLog, func(e pyEntry) bool { return e.payload()["key"] == id })
		check("  handled once by Python", n == 1, "%d times", n)

		id = key("s3-py-defer")
		sent = time.Now()
		if err := toPy(Ctl{Action: "defer", Seconds: int(delay / time.Second), Queue: goQueue, MType: Order{}.MessageType(), Body: Order{OrderID: id}}); err != nil {
			return err
		}
		m, ok := rec.wait(wait, func(s seen) bool { return strings.Contains(s.body, id) })
		took = m.at.Sub(sent)
		dt, _ := m.headers["PikaBus.DeferredTime"].(string)
		due, _ := time.Parse(time.RFC3339Nano, dt)
		check("Python's Defer reached the Go handler when due", ok && !m.at.Before(due.Add(-time.Second)) && took < delay+3*time.Second,
			"after %s (delay %s), DeferredTime %q, handled %s after it", took.Round(time.Millisecond), delay, dt, m.at.Sub(due).Round(time.Millisecond))
		time.Sleep(2 * time.Second)
		n = rec.count(func(s seen) bool { return strings.Contains(s.body, id) })
		check("  handled once by Go", n == 1, "%d times", n)
	}

	fmt.Println("\n== 4. Failing handlers, the error queue and replay")
	{
		id := key("s4-py-fail")
		if err := toPy(Ctl{Action: "fail", Key: id}); err != nil {
			return err
		}
		// PikaBus: 1 + 2 retries (1 s, 2 s), then the error queue.
		inErr, ok := getError(ctx, raw, func(d amqp091.Delivery) bool { return strings.Contains(string(d.Body), id) }, wait)
		check("PikaBus put its failed message in the error queue", ok, "")
		if ok {
			fmt.Printf("  error queue copy from PikaBus, as amqp091 reads it:\n%s", dump(inErr))
		}
		if err := toPy(Ctl{Action: "heal", Key: id}); err != nil {
			return err
		}
		waitPy(pyLog, wait, func(e pyEntry) bool { return e.payload()["action"] == "heal" && e.payload()["key"] == id })
		res, err := gb.ReplayErrors(ctx, middleware.ReplayOptions{SourceQueues: []string{pyQueue}})
		check("busline replayed PikaBus's failed message to its source queue", err == nil && len(res.Replayed) >= 1, "%+v, error %v", res, err)
		e, ok := waitPy(pyLog, wait, func(e pyEntry) bool {
			_, r := e.header("ErrorRetries")
			return e.payload()["key"] == id && e.payload()["action"] == "fail" && (r == nil || fmt.Sprint(r) == "0")
		})
		check("  Python handled the replayed message with a fresh retry count", ok, "ErrorRetries parsed %v", e.parsed("ErrorRetries"))
		n := countPy(pyLog, func(e pyEntry) bool { return e.payload()["key"] == id && e.payload()["action"] == "fail" })
		check("  Python's attempts: 1 + 2 retries + 1 replayed", n == 4, "%d", n)

		id = key("s4-go-fail")
		if err := gb.Send(ctx, goQueue, Fail{Key: id}); err != nil {
			return err
		}
		inErr, ok = getError(ctx, raw, func(d amqp091.Delivery) bool { return strings.Contains(string(d.Body), id) }, wait)
		check("busline put its failed message in the error queue", ok, "")
		if ok {
			fmt.Printf("  error queue copy from busline, as amqp091 reads it:\n%s", dump(inErr))
		}
		if err := toPy(Ctl{Action: "peekerror", Max: 20}); err != nil {
			return err
		}
		e, ok = waitPy(pyLog, wait, func(e pyEntry) bool {
			return e["kind"] == "error-queue" && strings.Contains(fmt.Sprint(e["payload"]), id)
		})
		rt, rv := e.header("ErrorRetries")
		_, sq := e.header("SourceQueue")
		dt, dv := e.header("ErrorDetails")
		check("PikaBus's tools read busline's error queue copy", ok && e.parsed("ErrorRetries") != nil && sq == goQueue && dt == "str" &&
			!strings.HasPrefix(fmt.Sprint(e.parsed("TimeSent")), "ERROR"),
			"ErrorRetries %v (%s), SourceQueue %v, ErrorDetails %q, TimeSent parsed %v", rv, rt, sq, dv, e.parsed("TimeSent"))
		// The Go message goes back to its endpoint, healed, with busline's
		// replay, once PikaBus has put it back (nack) on the error queue.
		healed.Store(id, true)
		// A message another consumer holds unacked is not there to replay:
		// try again until RabbitMQ has requeued it.
		for deadline := time.Now().Add(wait); ; time.Sleep(250 * time.Millisecond) {
			res, err = gb.ReplayErrors(ctx, middleware.ReplayOptions{SourceQueues: []string{goQueue}})
			if err != nil || len(res.Replayed) > 0 || time.Now().After(deadline) {
				break
			}
		}
		m, ok := rec.wait(wait, func(s seen) bool {
			return strings.Contains(s.body, id) && s.in.Retries == 0 && s.at.After(e.received())
		})
		check("busline replayed its own failed message after PikaBus read it", err == nil && ok && m.handler == "Fail", "%+v, error %v", res, err)
	}

	fmt.Println("\n== 4b. A message busline deferred (RabbitMQ's x-death headers on it) fails in PikaBus")
	{
		id := key("s4b-deferred-fail")
		if err := gb.Defer(ctx, time.Second, pyQueue, Ctl{Action: "fail", Key: id}); err != nil {
			return err
		}
		inErr, ok := getError(ctx, raw, func(d amqp091.Delivery) bool { return strings.Contains(string(d.Body), id) }, wait)
		check("PikaBus put the deferred message in the error queue, x-death and all", ok && inErr.Headers["x-death"] != nil, "")
		if ok {
			fmt.Printf("  error queue copy from PikaBus, as amqp091 reads it:\n%s", dump(inErr))
		}
		if err := toPy(Ctl{Action: "heal", Key: id}); err != nil {
			return err
		}
		waitPy(pyLog, wait, func(e pyEntry) bool { return e.payload()["action"] == "heal" && e.payload()["key"] == id })
		res, err := gb.ReplayErrors(ctx, middleware.ReplayOptions{SourceQueues: []string{pyQueue}})
		check("busline replayed it", err == nil && len(res.Replayed) == 1, "%+v, error %v", res, err)
		n := 0
		_, ok = waitPy(pyLog, wait, func(e pyEntry) bool {
			n = countPy(pyLog, func(e pyEntry) bool { return e.payload()["key"] == id && e.payload()["action"] == "fail" })
			return n == 4
		})
		check("  Python handled it: 1 + 2 retries + 1 replayed", ok, "%d", n)
	}

	fmt.Println("\n== 5. Shared topology")
	topology(raw)

	fmt.Println("\n== Messages on the shared exchanges, as amqp091 reads them (tap queue)")
	for {
		ch, err := raw.Channel()
		if err != nil {
			return err
		}
		d, ok, err := ch.Get(tapQueue, true)
		ch.Close()
		if err != nil || !ok {
			break
		}
		fmt.Printf("-- %s %q\n%s", d.Exchange, d.RoutingKey, dump(d))
	}
	return nil
}

// pyChecks checks what PikaBus made of a message from busline.
func pyChecks(ok bool, e pyEntry, intent, from string) {
	name := "Python handled Go's " + intent
	if !ok {
		check(name, false, "not received")
		return
	}
	_, in := e.header("Intent")
	_, rt := e.header("ReplyToAddress")
	ts := fmt.Sprint(e.parsed("TimeSent"))
	check(name, in == intent && rt == from && !strings.HasPrefix(ts, "ERROR") && ts != "<nil>" && e.prop("message_id") != nil,
		"Intent %v, ReplyToAddress %v, TimeSent parsed by PikaBus %s, message_id %v, type %v, timestamp %v", in, rt, ts, e.prop("message_id"), e.prop("type"), e.prop("timestamp"))
	var bad []string
	h, _ := e["headers"].(map[string]any)
	for k, v := range h {
		if t, _ := v.(map[string]any)["type"].(string); strings.HasPrefix(k, "PikaBus.") && t != "str" {
			bad = append(bad, k+":"+t)
		}
	}
	check("  every PikaBus header of Go's is a str in Python", len(bad) == 0, "%v", bad)
}

// getError waits for a message pred accepts on the error queue and returns
// it, leaving it there.
func getError(ctx context.Context, c *amqp091.Connection, pred func(amqp091.Delivery) bool, d time.Duration) (amqp091.Delivery, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ch, err := c.Channel()
		if err != nil {
			return amqp091.Delivery{}, false
		}
		var found *amqp091.Delivery
		for {
			m, ok, err := ch.Get("error", false)
			if err != nil || !ok {
				break
			}
			if pred(m) {
				found = &m
				break
			}
		}
		ch.Close() // requeues what it got
		if found != nil {
			return *found, true
		}
		time.Sleep(250 * time.Millisecond)
	}
	return amqp091.Delivery{}, false
}

// dump prints a delivery's properties and headers with their AMQP types as
// amqp091 decoded them.
func dump(d amqp091.Delivery) string {
	var b strings.Builder
	fmt.Fprintf(&b, "   properties: message_id=%q correlation_id=%q reply_to=%q type=%q content_type=%q content_encoding=%q delivery_mode=%d timestamp=%s\n",
		d.MessageId, d.CorrelationId, d.ReplyTo, d.Type, d.ContentType, d.ContentEncoding, d.DeliveryMode, d.Timestamp.UTC().Format(time.RFC3339))
	keys := make([]string, 0, len(d.Headers))
	for k := range d.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := fmt.Sprint(d.Headers[k])
		if i := strings.IndexByte(v, '\n'); i >= 0 {
			v = v[:i] + " ..."
		}
		if len(v) > 100 {
			v = v[:100] + " ..."
		}
		fmt.Fprintf(&b, "   %-28s %-8T %s\n", k, d.Headers[k], v)
	}
	fmt.Fprintf(&b, "   body %s\n", d.Body)
	return b.String()
}

// tap binds a queue of its own beside the endpoints' queues, so that it
// gets a copy of every message sent to them or published.
func tap(c *amqp091.Connection) error {
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	// Exclusive: it goes with the driver's connection, so that its "#"
	// binding never outlives the run (it would make every event routable).
	if _, err := ch.QueueDeclare(tapQueue, false, true, true, false, amqp091.Table{"x-queue-type": "classic"}); err != nil {
		return err
	}
	for _, k := range []string{pyQueue, goQueue, goUntyped, "error"} {
		if err := ch.QueueBind(tapQueue, k, directEx, false, nil); err != nil {
			return fmt.Errorf("tap: bind %s (start the Python service first, it declares %s): %w", k, directEx, err)
		}
	}
	return ch.QueueBind(tapQueue, "#", topicEx, false, nil)
}

// topology declares what each side declares, the other side's way, and
// reports what RabbitMQ says.
func topology(c *amqp091.Connection) {
	try := func(name string, f func(ch *amqp091.Channel) error) error {
		ch, err := c.Channel()
		if err != nil {
			return err
		}
		defer ch.Close()
		return f(ch)
	}
	// PikaBus declares its exchanges durable, not auto-deleted, not
	// internal, without arguments; busline must have declared them alike.
	for _, ex := range []struct{ name, kind string }{{directEx, "direct"}, {topicEx, "topic"}} {
		err := try(ex.name, func(ch *amqp091.Channel) error {
			return ch.ExchangeDeclare(ex.name, ex.kind, true, false, false, false, nil)
		})
		check("exchange "+ex.name+" declared as PikaBus declares it", err == nil, "%v", err)
	}
	// PikaBus declares the error queue durable, without arguments, each
	// time a message fails; busline creates it when it is missing.
	err := try("error", func(ch *amqp091.Channel) error {
		_, err := ch.QueueDeclare("error", true, false, false, false, nil)
		return err
	})
	check("error queue declared as PikaBus declares it", err == nil, "%v", err)
	err = try("error", func(ch *amqp091.Channel) error {
		q, err := ch.QueueDeclarePassive("error", true, false, false, false, nil)
		fmt.Printf("  error queue: %d messages\n", q.Messages)
		return err
	})
	check("error queue found by a passive declaration", err == nil, "%v", err)
	// The Python listener queue is a classic queue with no arguments: a
	// quorum declaration of it (a Go endpoint of the same name) conflicts.
	err = try(pyQueue, func(ch *amqp091.Channel) error {
		_, err := ch.QueueDeclare(pyQueue, true, false, false, false, amqp091.Table{"x-queue-type": "quorum"})
		return err
	})
	fmt.Printf("  declaring PikaBus's listener queue as a busline quorum endpoint: %v\n", err)
}

// deleteQueues deletes queues, with their messages and bindings.
func deleteQueues(url string, queues ...string) error {
	c, err := amqp091.Dial(url)
	if err != nil {
		return err
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	for _, q := range queues {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			return fmt.Errorf("delete %s: %w", q, err)
		}
	}
	return nil
}
