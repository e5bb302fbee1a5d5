package bus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// RawHandler handles a message as it came over the wire: its headers,
// properties and body, undecoded. m is shared by every handler of the
// message and by its retries: read it, do not modify it; copy what you keep.
// [IncomingFrom] gives its metadata already read.
type RawHandler func(ctx context.Context, m *transport.Message) error

// Handle registers h for the messages of T's message type (see [TypeName];
// [WithMessageType] overrides it): their bodies are decoded into a T with the
// codec of their content type, and h is called with the handler's context
// (see [IncomingFrom]). A body that cannot be decoded fails the message with
// [ErrUndecodable]: it goes to the error queue without retries.
//
// Several handlers may take one message type, registered with Handle or
// [Bus.HandleRaw]: they run one after the other, in the order registered,
// and all must succeed for the message to be acked; a retry runs them all
// again. Handlers may be registered before or after Start.
//
// Handle fails if T has no name (see [TypeName]), or if another Go type
// whose name was also derived, not chosen, already took the same name on
// this Bus (handled or sent): two types named PlaceOrder in two packages.
// It fails with
// [ErrSendOnly] on a send-only Bus and [ErrClosed] after Shutdown or Close.
func Handle[T any](b *Bus, h func(ctx context.Context, msg T) error, opts ...HandlerOption) error {
	if h == nil {
		return fmt.Errorf("%s: Handle: nil handler", b.name)
	}
	var cfg handlerConfig
	for _, o := range opts {
		o.applyHandler(&cfg)
	}
	t := reflect.TypeFor[T]()
	name, derived := cfg.messageType, false
	if name == "" {
		info, err := typeInfoOf(t)
		if err != nil {
			return fmt.Errorf("%s: Handle: %w", b.name, err)
		}
		if err := b.claim(info); err != nil {
			return fmt.Errorf("%s: Handle: %w", b.name, err)
		}
		name, derived = info.name, info.derived
	}
	th := &typedHandler[T]{fn: h}
	th.pool.New = func() any { return new(T) }
	return b.register(name, handlerEntry{call: th.handle, goType: t, derived: derived})
}

// HandleRaw registers h for the messages of messageType, undecoded. See
// [Handle] for how several handlers of one type run. The message type must
// not be empty: to take messages that carry no type, see
// [Options.DefaultMessageType] and [Bus.HandleFallback].
func (b *Bus) HandleRaw(messageType string, h RawHandler) error {
	if h == nil {
		return fmt.Errorf("%s: HandleRaw: nil handler", b.name)
	}
	if messageType == "" {
		return fmt.Errorf("%s: HandleRaw: empty message type (see Options.DefaultMessageType and HandleFallback)", b.name)
	}
	return b.register(messageType, rawEntry(h))
}

// HandleFallback registers h for the messages no other handler takes: a
// message whose type no handler registered with [Handle] or [Bus.HandleRaw]
// takes, or that carries no type at all (and [Options.DefaultMessageType]
// gives it none that a handler takes). This is how PikaBus itself handles
// messages: it calls every handler for every message, whatever its type.
//
// A received message goes, in this order of precedence:
//
//  1. to the handlers of its type (Handle and HandleRaw), if any;
//  2. else to the fallback handlers, if any;
//  3. else to the [Options.Unhandled] policy: the error queue, with
//     [ErrUnhandled], by default.
//
// So a fallback handler takes what would otherwise be unhandled; it does
// not run for messages that have handlers of their own, even when those
// fail. Several fallback handlers run as the handlers of one type do: one
// after the other, in the order registered, all of them retried if one
// fails. A fallback handler sees the message undecoded, as a raw handler
// does; [IncomingFrom] gives its metadata (MessageType is empty for a
// message without a type), and it may send, publish and reply as any
// handler. HandleFallback fails as Handle does on a send-only or closed Bus.
func (b *Bus) HandleFallback(h RawHandler) error {
	if h == nil {
		return fmt.Errorf("%s: HandleFallback: nil handler", b.name)
	}
	return b.register("", rawEntry(h))
}

func rawEntry(h RawHandler) handlerEntry {
	return handlerEntry{call: func(ctx context.Context, _ *Bus, m *transport.Message) error {
		return h(ctx, m)
	}}
}

// handlerEntry is one registered handler.
type handlerEntry struct {
	call    func(ctx context.Context, b *Bus, m *transport.Message) error
	goType  reflect.Type // nil for raw handlers
	derived bool         // the name was derived from goType
}

// handlerTable maps message types to their handlers, and holds the fallback
// handlers. It is replaced, never changed, so that handling reads it
// without locking.
type handlerTable struct {
	byType   map[string][]handlerEntry
	fallback []handlerEntry
}

// legacy returns the handlers of a derived name for a message type in the
// form busline wrote before derived names left the package out
// ("orders.PlaceOrder"), if every handler of that name is typed with a
// derived name.
func (t *handlerTable) legacy(name string) []handlerEntry {
	short, ok := legacyName(name)
	if !ok {
		return nil
	}
	hs := t.byType[short]
	for _, e := range hs {
		if !e.derived {
			return nil
		}
	}
	return hs
}

// register adds e for the message type name; an empty name registers a
// fallback handler.
func (b *Bus) register(name string, e handlerEntry) error {
	what := "Handle " + name
	if name == "" {
		what = "HandleFallback"
	}
	if b.queue == "" {
		return fmt.Errorf("%s: %s: %w", b.name, what, ErrSendOnly)
	}
	if b.closed.Load() {
		return fmt.Errorf("%s: %s: %w", b.name, what, ErrClosed)
	}
	b.regMu.Lock()
	defer b.regMu.Unlock()
	old := b.handlers.Load()
	nt := &handlerTable{byType: old.byType, fallback: old.fallback}
	if name == "" {
		nt.fallback = append(append([]handlerEntry(nil), old.fallback...), e)
		b.handlers.Store(nt)
		return nil
	}
	for _, x := range old.byType[name] {
		if e.derived && x.derived && x.goType != e.goType {
			return fmt.Errorf("%s: Handle: %v and %v both derive the message type %q: give one a MessageType method or register it WithMessageType",
				b.name, x.goType, e.goType, name)
		}
	}
	nt.byType = make(map[string][]handlerEntry, len(old.byType)+1)
	for k, v := range old.byType {
		nt.byType[k] = v
	}
	nt.byType[name] = append(append([]handlerEntry(nil), old.byType[name]...), e)
	b.handlers.Store(nt)
	return nil
}

// typedHandler decodes into a pooled *T and calls fn with a copy, which
// saves an allocation per message: the handler owns its copy, and the
// pooled value is zeroed before each decode so that nothing the handler
// kept (slices, maps) is decoded into again.
type typedHandler[T any] struct {
	fn   func(ctx context.Context, msg T) error
	pool sync.Pool
}

func (th *typedHandler[T]) handle(ctx context.Context, b *Bus, m *transport.Message) error {
	var zero T
	p := th.pool.Get().(*T)
	err := b.decode(m, p)
	if err != nil {
		*p = zero
		th.pool.Put(p)
		return err
	}
	v := *p
	*p = zero
	th.pool.Put(p)
	return th.fn(ctx, v)
}

// decode decodes m into v with the codec of its content type.
func (b *Bus) decode(m *transport.Message, v any) error {
	c, err := b.codecFor(m)
	if err != nil {
		return err
	}
	return b.decodeWith(c, m, v)
}

// codecFor returns the codec of m's content type.
func (b *Bus) codecFor(m *transport.Message) (Codec, error) {
	ct := m.ContentType
	if s, ok := middleware.HeaderString(m.Headers[b.names.ContentType]); ok && s != "" {
		ct = s
	}
	c, ok := b.codecs.forContentType(ct)
	if !ok {
		return nil, fmt.Errorf("%w: no codec for content type %q", ErrUndecodable, ct)
	}
	return c, nil
}

// decodeWith decodes m into v with c.
func (b *Bus) decodeWith(c Codec, m *transport.Message, v any) error {
	if err := c.Decode(m, v); err != nil {
		return fmt.Errorf("%w: decoding %s as %s into %T: %v", ErrUndecodable, b.messageTypeOf(m), mediaType(c.ContentType()), v, err)
	}
	return nil
}

// handling is one delivery on its way through the pipeline. It is the
// context the pipeline runs under, so that the terminal handler finds it
// (through whatever contexts the stages derive) without a
// context.WithValue, and it holds the scope of the first attempt, so that a
// message handled once costs one allocation here.
type handling struct {
	context.Context
	msg   middleware.Message
	first scope
	used  atomic.Bool
	bus   *Bus
	// mu guards exposed and recycled, and every read of the message by
	// code that may run after its handling (a goroutine a handler started).
	mu sync.Mutex
	// exposed is set once the message was handed to code outside the Bus
	// (a raw or fallback handler, IncomingFrom), which may keep it: the
	// delivery is then not recycled.
	exposed bool
	// recycled is set when the delivery went back to its transport.
	recycled bool
}

type handlingKey struct{}

func (h *handling) Value(k any) any {
	if _, ok := k.(handlingKey); ok {
		return h
	}
	return h.Context.Value(k)
}

// deliver is the transport.Handler of the endpoint's consumer: it runs the
// pipeline and settles the delivery.
func (b *Bus) deliver(ctx context.Context, d *transport.Delivery) {
	b.running.Add(1)
	defer b.running.Add(-1)
	if d.ExchangeName != "" && b.exchanges != nil {
		b.adoptForeign(d)
	}
	if admitted, ok := b.gate.acquire(ctx, len(d.Body)); !ok {
		// Stopping while the message waited for room: back to the queue.
		if err := d.Nack(true); err != nil {
			b.log.WarnContext(ctx, "nack failed", "queue", d.Queue, "message_id", d.ID, "error", err)
		}
		return
	} else if admitted {
		defer b.gate.release(len(d.Body))
	}
	h := &handling{Context: ctx, bus: b}
	h.msg = middleware.Message{Message: d.Message, Queue: d.Queue, Redelivered: d.Redelivered}
	b.noticeTimeForm(ctx, &h.msg)
	err := b.runPipeline(h, d)
	switch {
	case err == nil && !b.abandoned.Load():
		if b.holds.n.Load() > 0 {
			b.holds.forget(b.holdKey(d))
		}
		if aerr := d.Ack(); aerr != nil {
			b.log.WarnContext(ctx, "ack failed; the message will be delivered again", "queue", d.Queue, "message_id", d.ID, "error", aerr)
		}
		b.recycle(h, d)
		return
	case err == nil || ctx.Err() != nil:
		// Stopping: Shutdown or Close gave up on this handler, or
		// cancelled it. The message goes back at once.
	default:
		b.hold(ctx, d, err)
	}
	if nerr := d.Nack(true); nerr != nil {
		b.log.WarnContext(ctx, "nack failed", "queue", d.Queue, "message_id", d.ID, "error", nerr)
	}
	b.recycle(h, d)
}

// recycle gives a handled delivery back to a transport that reuses its
// memory (transport.Recycler), when nothing can read it any more: the
// pipeline is the Bus's own (Options.Pipeline and Options.Middleware
// unset), whose stages copy what they keep, and the message was never
// handed out (h.exposed). A typed handler gets a decoded copy.
func (b *Bus) recycle(h *handling, d *transport.Delivery) {
	if b.recycler == nil {
		return
	}
	h.mu.Lock()
	h.recycled = !h.exposed
	h.mu.Unlock()
	if h.recycled {
		b.recycler.Recycle(d)
	}
}

// hold keeps a message whose failure the pipeline could not deal with for a
// while before it goes back to its queue, so that no input and no broker
// state can make a message cycle faster than a backoff (see holds): the
// delivery keeps its slot, which slows the consumer. A forward that failed
// is reported (ForwardFailed, an Error log line), and an error queue found
// missing is declared again. The hold ends early when the Bus stops.
func (b *Bus) hold(ctx context.Context, d *transport.Delivery, err error) {
	delay, times := b.holds.next(b.holdKey(d), time.Now())
	var fe *middleware.ForwardError
	if errors.As(err, &fe) {
		b.log.ErrorContext(ctx, "cannot forward the failed message; holding it, then giving it back to its queue",
			"queue", d.Queue, "message_id", fe.MessageID, "stage", fe.Stage, "destination", fe.Queue,
			"hold", delay, "times", times, "error", fe.Err, "handling_error", fe.Cause)
		if fe.Queue == b.errorQueue && errors.Is(fe, transport.ErrUnroutable) {
			b.redeclareErrorQueue(ctx)
		}
		if b.opts.OnNotice != nil || b.hooks.Event != nil {
			b.emit(Notice{Kind: ForwardFailed, Queue: d.Queue, Err: err, MessageID: fe.MessageID,
				MessageType: b.messageTypeOf(&d.Message), Retries: times, Delay: delay})
		}
	} else {
		b.log.ErrorContext(ctx, "handling failed and the pipeline could not deal with it; holding the message, then giving it back to its queue",
			"queue", d.Queue, "message_id", d.ID, "hold", delay, "times", times, "error", err)
	}
	b.mu.Lock()
	rel := b.released
	b.mu.Unlock()
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-rel:
	}
}

// holdKey identifies d's message for holds.
func (b *Bus) holdKey(d *transport.Delivery) string {
	id := d.ID
	if id == "" {
		id, _ = middleware.HeaderString(d.Headers[b.names.MessageID])
	}
	return d.Queue + "\x00" + id
}

// releaseHolds ends the holds under way: the Bus is stopping or pausing.
func (b *Bus) releaseHolds() {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.released:
	default:
		close(b.released)
	}
}

// redeclareErrorQueue declares the error queue again after a forward found
// it missing (deleted while the endpoint runs), as Start declared it.
func (b *Bus) redeclareErrorQueue(ctx context.Context) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), middleware.DefaultDispatchTimeout)
	defer cancel()
	err := b.t.Declare(dctx, transport.Topology{
		Queue: transport.Queue{Name: b.errorQueue, Type: b.errorQueueType(), Shared: true},
	})
	if err != nil {
		b.log.ErrorContext(ctx, "cannot declare the missing error queue", "error_queue", b.errorQueue, "error", err)
		return
	}
	b.log.WarnContext(ctx, "the error queue was missing; declared it again", "error_queue", b.errorQueue)
}

// runPipeline runs the pipeline, turning a panic that escaped it (a
// pipeline without the Recover stage) into an error.
func (b *Bus) runPipeline(h *handling, d *transport.Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &middleware.PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	if b.hooks.Handle != nil {
		return b.hooks.Handle(h, d, &h.msg, b.pipeline)
	}
	return b.pipeline(h, &h.msg)
}

// terminal is the innermost handler of the pipeline: it runs the handlers of
// the message's type in a fresh scope and dispatches what they sent.
func (b *Bus) terminal(ctx context.Context, m *middleware.Message) error {
	var s *scope
	h, _ := ctx.Value(handlingKey{}).(*handling)
	if h == nil || h.bus != b || &h.msg != m {
		h = nil
	}
	if h != nil && h.used.CompareAndSwap(false, true) {
		s = &h.first
	} else {
		s = new(scope)
	}
	s.init(ctx, b, m, nil)
	s.h = h
	name := b.messageTypeOf(&m.Message)
	table := b.handlers.Load()
	hs := table.byType[name]
	if len(hs) == 0 {
		hs = table.legacy(name)
	}
	if len(hs) == 0 {
		hs = table.fallback
	}
	if len(hs) == 0 {
		releaseAll(s.finish())
		return b.unhandled(ctx, m, name)
	}
	if b.opts.UnitOfWork != nil {
		return b.handleInUnit(ctx, m, s, hs)
	}
	for i := range hs {
		if hs[i].goType == nil && h != nil {
			h.mu.Lock()
			h.exposed = true // a raw handler sees the message itself
			h.mu.Unlock()
		}
		if err := hs[i].call(s, b, &m.Message); err != nil {
			releaseAll(s.finish())
			return err
		}
	}
	out := s.finish()
	if len(out) == 0 {
		return nil
	}
	if b.abandoned.Load() {
		// Shutdown or Close gave up on this handler: its message goes
		// back to the queue, so what it sent must not go out.
		releaseAll(out)
		return fmt.Errorf("%s: stopped before the handler returned: %w", b.name, context.Canceled)
	}
	err := b.batch(ctx, out...)
	releaseAll(out)
	if err != nil {
		return fmt.Errorf("%s: dispatching the %d messages sent while handling %s: %w", b.name, len(out), name, err)
	}
	return nil
}

func (b *Bus) unhandled(ctx context.Context, m *middleware.Message, name string) error {
	if b.opts.Unhandled == UnhandledDiscard {
		b.log.WarnContext(ctx, "no handler for the message type; message discarded",
			"queue", m.Queue, "message_type", name, "message_id", m.ID)
		return nil
	}
	if name == "" {
		return fmt.Errorf("%w: the message has no message type (no %s header, no type property), and endpoint %q has no Options.DefaultMessageType and no fallback handler; it handles %s",
			ErrUnhandled, b.names.MessageType, b.queue, b.handledTypes())
	}
	return fmt.Errorf("%w: endpoint %q has no handler for message type %q; it handles %s", ErrUnhandled, b.queue, name, b.handledTypes())
}

// handledTypes lists the message types the endpoint has handlers for, for
// an unhandled message's error: a sender that got a name wrong sees the
// right one.
func (b *Bus) handledTypes() string {
	names := slices.Sorted(maps.Keys(b.handlers.Load().byType))
	const most = 20
	switch {
	case len(names) == 0:
		return "no message type"
	case len(names) > most:
		return fmt.Sprintf("%q and %d more", names[:most], len(names)-most)
	}
	return fmt.Sprintf("%q", names)
}
