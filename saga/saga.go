package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
)

// Headers of timeout messages.
const (
	// HeaderSagaID carries the id of the instance a timeout is for.
	HeaderSagaID = "busline.SagaId"
	// HeaderSagaName carries the name of its saga.
	HeaderSagaName = "busline.SagaName"
	// HeaderTimeoutAt carries when it is due (RFC 3339, UTC): a timeout
	// that arrives before is deferred again, so it is never early.
	HeaderTimeoutAt = "busline.SagaTimeoutAt"
)

// NotFoundPolicy says what happens to a message that finds no instance
// and does not start one.
type NotFoundPolicy uint8

const (
	// NotFoundIgnore acks the message and logs it at Info: the default,
	// as in NServiceBus (a late message for an instance that completed).
	NotFoundIgnore NotFoundPolicy = iota
	// NotFoundToErrorQueue fails it with an error wrapping ErrNotFound,
	// permanent: it goes to the error queue without retries.
	NotFoundToErrorQueue
)

// Options configure a [Saga]. The zero value deletes an instance when it
// completes and ignores messages that find no instance.
type Options struct {
	// KeepCompleted, when positive, keeps a completed instance's record
	// for this long, marked completed: messages and timeouts for it are
	// then dropped (logged at Debug), and its correlation value cannot
	// start a new instance until it expires. Zero deletes the record at
	// completion.
	KeepCompleted time.Duration

	// NotFound says what happens to a message that finds no instance and
	// does not start one. The zero value is NotFoundIgnore.
	NotFound NotFoundPolicy

	// Logger receives the saga's decisions: messages dropped (not found,
	// completed instance), timeouts deferred again. Nil means silent.
	Logger *slog.Logger
}

// Saga defines a saga of state S: the message types that start it and
// that it handles, how each finds its instance, and their handlers. Build
// it with [New], [StartedBy], [Handles] and [Timeout], then run it on an
// endpoint with [Saga.Register]. The state is stored as JSON: S's
// exported fields are what is kept.
type Saga[S any] struct {
	name    string
	opts    Options
	log     *slog.Logger
	entries map[reflect.Type]*entry[S]
	order   []*entry[S]
	errs    []error
}

// entry is the handler of one message type.
type entry[S any] struct {
	goType    reflect.Type
	starts    bool
	timeout   bool
	correlate func(msg any) string // nil for timeouts
	handle    func(ctx context.Context, in *Instance[S], msg any) error
	// register registers the bus handler of the type, which calls fn
	// with the decoded message.
	register func(b *bus.Bus, fn func(ctx context.Context, msg any) error) error
}

// New returns a saga named name, with no message type yet. The name keys
// its instances in the store: keep it stable.
func New[S any](name string, opts Options) *Saga[S] {
	sg := &Saga[S]{name: name, opts: opts, entries: map[reflect.Type]*entry[S]{}, log: opts.Logger}
	if sg.log == nil {
		sg.log = slog.New(slog.DiscardHandler)
	}
	if name == "" {
		sg.errs = append(sg.errs, errors.New("saga.New: empty name"))
	}
	if opts.KeepCompleted < 0 {
		sg.errs = append(sg.errs, fmt.Errorf("saga.New: %s: negative KeepCompleted", name))
	}
	return sg
}

// Name returns the saga's name.
func (sg *Saga[S]) Name() string { return sg.name }

// StartedBy says that messages of type M start an instance when none has
// their correlation value, and handles them with h. correlate reads the
// correlation value from the message; an empty value fails the message
// (to the error queue). Mistakes (nil functions, a type given twice) are
// reported by [Saga.Register].
func StartedBy[S, M any](sg *Saga[S], correlate func(M) string, h func(ctx context.Context, s *Instance[S], msg M) error) {
	add(sg, true, false, correlate, h)
}

// Handles says that messages of type M are handled by h on the instance
// whose correlation value correlate reads from them. A message that finds
// none follows [Options.NotFound].
func Handles[S, M any](sg *Saga[S], correlate func(M) string, h func(ctx context.Context, s *Instance[S], msg M) error) {
	add(sg, false, false, correlate, h)
}

// Timeout says that messages of type M are timeouts, asked for with
// [Instance.RequestTimeout], and handled by h on the instance whose id
// they carry. A timeout for an instance that completed is dropped.
func Timeout[S, M any](sg *Saga[S], h func(ctx context.Context, s *Instance[S], msg M) error) {
	add[S, M](sg, false, true, nil, h)
}

func add[S, M any](sg *Saga[S], starts, timeout bool, correlate func(M) string, h func(ctx context.Context, s *Instance[S], msg M) error) {
	t := reflect.TypeFor[M]()
	switch {
	case h == nil:
		sg.errs = append(sg.errs, fmt.Errorf("saga %s: nil handler for %v", sg.name, t))
		return
	case !timeout && correlate == nil:
		sg.errs = append(sg.errs, fmt.Errorf("saga %s: nil correlation function for %v", sg.name, t))
		return
	case sg.entries[t] != nil:
		sg.errs = append(sg.errs, fmt.Errorf("saga %s: %v is given twice", sg.name, t))
		return
	}
	e := &entry[S]{
		goType: t, starts: starts, timeout: timeout,
		handle: func(ctx context.Context, in *Instance[S], msg any) error { return h(ctx, in, msg.(M)) },
		register: func(b *bus.Bus, fn func(ctx context.Context, msg any) error) error {
			return bus.Handle(b, func(ctx context.Context, m M) error { return fn(ctx, m) })
		},
	}
	if correlate != nil {
		e.correlate = func(msg any) string { return correlate(msg.(M)) }
	}
	sg.entries[t] = e
	sg.order = append(sg.order, e)
}

// check returns the mistakes made defining the saga.
func (sg *Saga[S]) check() error {
	errs := sg.errs
	if len(sg.order) == 0 {
		errs = append(errs, fmt.Errorf("saga %s: no message type", sg.name))
	}
	starts := false
	for _, e := range sg.order {
		starts = starts || e.starts
	}
	if len(sg.order) > 0 && !starts {
		errs = append(errs, fmt.Errorf("saga %s: no message type starts it (see StartedBy)", sg.name))
	}
	return errors.Join(errs...)
}

// timeoutTypes returns the set of timeout message types.
func (sg *Saga[S]) timeoutTypes() map[reflect.Type]bool {
	m := map[reflect.Type]bool{}
	for _, e := range sg.order {
		if e.timeout {
			m[e.goType] = true
		}
	}
	return m
}

// Correlate returns the correlation value of msg, and false if msg's type
// is a timeout or not the saga's.
func (sg *Saga[S]) Correlate(msg any) (string, bool) {
	e := sg.entries[reflect.TypeOf(msg)]
	if e == nil || e.correlate == nil {
		return "", false
	}
	return e.correlate(msg), true
}

// Apply runs the handler of msg's type on in, detached from any bus and
// store: what the handler sends stays in in.Effects. It is for tests and
// tools; package sagatest builds on it. It fails with an error wrapping
// ErrNotFound if in is new and msg's type does not start the saga, and
// when msg's correlation value is not in's.
func (sg *Saga[S]) Apply(ctx context.Context, in *Instance[S], msg any) error {
	if err := sg.check(); err != nil {
		return err
	}
	e := sg.entries[reflect.TypeOf(msg)]
	if e == nil {
		return fmt.Errorf("saga %s: no handler for %T", sg.name, msg)
	}
	if in.isNew && !e.starts {
		return fmt.Errorf("saga %s: %T does not start the saga: %w", sg.name, msg, ErrNotFound)
	}
	if e.correlate != nil {
		if key := e.correlate(msg); key != in.correlation {
			return fmt.Errorf("saga %s: %T correlates to %q, not to the instance's %q", sg.name, msg, key, in.correlation)
		}
	}
	in.timeouts = sg.timeoutTypes()
	return e.handle(ctx, in, msg)
}

// Register runs the saga on the endpoint b with store s: it registers a
// handler with b for each of its message types (see bus.Handle). It
// reports the mistakes made defining the saga. A saga may be registered on
// several endpoints (competing consumers) with one store.
func (sg *Saga[S]) Register(b *bus.Bus, s Store) error {
	if err := sg.check(); err != nil {
		return err
	}
	if b == nil || s == nil {
		return fmt.Errorf("saga %s: Register: nil bus or store", sg.name)
	}
	r := &runner[S]{sg: sg, b: b, store: s, timeouts: sg.timeoutTypes()}
	for _, e := range sg.order {
		if err := e.register(b, func(ctx context.Context, msg any) error { return r.handle(ctx, e, msg) }); err != nil {
			return fmt.Errorf("saga %s: %w", sg.name, err)
		}
	}
	return nil
}

// runner is a saga registered on an endpoint.
type runner[S any] struct {
	sg       *Saga[S]
	b        *bus.Bus
	store    Store
	timeouts map[reflect.Type]bool
}

// handle handles one message of the saga: find (or start) the instance,
// run the handler, send what it sent, save.
func (r *runner[S]) handle(ctx context.Context, e *entry[S], msg any) error {
	sg := r.sg
	inc, _ := bus.IncomingFrom(ctx)
	var (
		rec Record
		err error
	)
	if e.timeout {
		var done bool
		rec, done, err = r.findTimeout(ctx, &inc, msg)
		if done || err != nil {
			return err
		}
	} else {
		key := e.correlate(msg)
		if key == "" {
			return bus.Permanent(fmt.Errorf("saga %s: %T (message %q) has an empty correlation value", sg.name, msg, inc.MessageID))
		}
		rec, err = r.store.Find(ctx, sg.name, key)
		switch {
		case errors.Is(err, ErrNotFound) && e.starts:
			rec = Record{Saga: sg.name, ID: bus.NewMessageID(), Correlation: key,
				Originator: inc.ReplyTo, OriginatorCorrelationID: inc.CorrelationID}
			if rec.OriginatorCorrelationID == "" {
				rec.OriginatorCorrelationID = inc.MessageID
			}
		case errors.Is(err, ErrNotFound):
			return r.notFound(ctx, &inc, msg, key)
		case err != nil:
			return fmt.Errorf("saga %s: finding the instance %q for %T: %w", sg.name, key, msg, err)
		}
	}
	if rec.Completed {
		sg.log.DebugContext(ctx, "saga: message for a completed instance dropped",
			"saga", sg.name, "instance", rec.ID, "message_type", inc.MessageType, "message_id", inc.MessageID)
		return nil
	}
	var state S
	in := NewInstance(state, rec)
	in.timeouts = r.timeouts
	if !in.isNew {
		if err := json.Unmarshal(rec.State, &in.State); err != nil {
			return fmt.Errorf("saga %s: decoding the state of instance %q: %w", sg.name, rec.ID, err)
		}
	}
	if err := e.handle(ctx, in, msg); err != nil {
		return err
	}
	if err := r.send(ctx, in); err != nil {
		return err
	}
	return r.save(ctx, rec, in)
}

// findTimeout finds the instance of a timeout. done reports that the
// timeout is dealt with: not due yet (deferred again), or for another
// saga, or for an instance that is gone.
func (r *runner[S]) findTimeout(ctx context.Context, inc *bus.Incoming, msg any) (rec Record, done bool, err error) {
	sg := r.sg
	var h map[string]any
	if inc.Message != nil {
		h = inc.Message.Headers
	}
	name, _ := middleware.HeaderString(h[HeaderSagaName])
	id, _ := middleware.HeaderString(h[HeaderSagaID])
	if name != sg.name {
		if name == "" {
			return rec, true, bus.Permanent(fmt.Errorf("saga %s: timeout %T (message %q) has no %s header", sg.name, msg, inc.MessageID, HeaderSagaName))
		}
		return rec, true, nil // another saga's timeout of the same type
	}
	if at, _ := middleware.HeaderString(h[HeaderTimeoutAt]); at != "" {
		due, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return rec, true, bus.Permanent(fmt.Errorf("saga %s: timeout %T: unreadable %s %q: %w", sg.name, msg, HeaderTimeoutAt, at, err))
		}
		if wait := time.Until(due); wait > 0 {
			sg.log.DebugContext(ctx, "saga: timeout arrived early; deferred again", "saga", sg.name, "instance", id, "wait", wait)
			return rec, true, r.b.Defer(ctx, wait, r.b.Queue(), msg, bus.WithFullQueueName(), bus.WithHeaders(map[string]any{
				HeaderSagaID: id, HeaderSagaName: name, HeaderTimeoutAt: at}))
		}
	}
	rec, err = r.store.Get(ctx, sg.name, id)
	if errors.Is(err, ErrNotFound) {
		sg.log.DebugContext(ctx, "saga: timeout for an instance that completed dropped", "saga", sg.name, "instance", id, "message_type", inc.MessageType)
		return rec, true, nil
	}
	if err != nil {
		return rec, true, fmt.Errorf("saga %s: finding instance %q for timeout %T: %w", sg.name, id, msg, err)
	}
	return rec, false, nil
}

// notFound applies the NotFound policy.
func (r *runner[S]) notFound(ctx context.Context, inc *bus.Incoming, msg any, key string) error {
	sg := r.sg
	if sg.opts.NotFound == NotFoundToErrorQueue {
		return bus.Permanent(fmt.Errorf("saga %s: no instance with correlation value %q for %T (message %q), and %T does not start one: %w",
			sg.name, key, msg, inc.MessageID, msg, ErrNotFound))
	}
	sg.log.InfoContext(ctx, "saga: no instance for the message, which does not start one; dropped",
		"saga", sg.name, "correlation", key, "message_type", inc.MessageType, "message_id", inc.MessageID)
	return nil
}

// send hands what the handler sent to the bus, which holds it in the
// handling's batch (or the outbox) until the handling succeeds.
func (r *runner[S]) send(ctx context.Context, in *Instance[S]) error {
	b := r.b
	for _, e := range in.effects {
		var err error
		switch e.Kind {
		case EffectSend:
			err = b.Send(ctx, e.Destination, e.Message, e.Options...)
		case EffectPublish:
			err = b.Publish(ctx, e.Destination, e.Message, e.Options...)
		case EffectDefer:
			err = b.Defer(ctx, e.Delay, e.Destination, e.Message, e.Options...)
		case EffectReply:
			err = b.Reply(ctx, e.Message, e.Options...)
		case EffectReplyToOriginator:
			err = b.Send(ctx, e.Destination, e.Message, append(e.Options, bus.WithFullQueueName())...)
		case EffectTimeout:
			at := time.Now().Add(e.Delay).UTC().Format(time.RFC3339Nano)
			err = b.Defer(ctx, e.Delay, b.Queue(), e.Message, bus.WithFullQueueName(), bus.WithHeaders(map[string]any{
				HeaderSagaID: in.id, HeaderSagaName: r.sg.name, HeaderTimeoutAt: at}))
		}
		if err != nil {
			return fmt.Errorf("saga %s: instance %q: %s %T: %w", r.sg.name, in.id, e.Kind, e.Message, err)
		}
	}
	return nil
}

// save stores the instance's new state, or deletes it.
func (r *runner[S]) save(ctx context.Context, rec Record, in *Instance[S]) error {
	sg := r.sg
	var err error
	switch {
	case in.completed && sg.opts.KeepCompleted == 0:
		if in.isNew {
			return nil
		}
		err = r.store.Delete(ctx, rec)
	default:
		if rec.State, err = json.Marshal(in.State); err != nil {
			return bus.Permanent(fmt.Errorf("saga %s: encoding the state of instance %q: %w", sg.name, in.id, err))
		}
		if in.completed {
			rec.Completed, rec.ExpiresAt = true, time.Now().Add(sg.opts.KeepCompleted)
		}
		if in.isNew {
			err = r.store.Insert(ctx, rec)
		} else {
			err = r.store.Update(ctx, rec)
		}
	}
	if err != nil {
		return fmt.Errorf("saga %s: saving instance %q (correlation %q, version %d): %w", sg.name, rec.ID, rec.Correlation, rec.Version, err)
	}
	return nil
}
