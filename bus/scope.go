package bus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// Incoming describes the message a handler is handling. Get it with
// [IncomingFrom].
type Incoming struct {
	// MessageID is the message's id (MessageId header, else message_id).
	MessageID string
	// CorrelationID is its correlation id (CorrelationId header, else
	// correlation_id); a Reply carries it back.
	CorrelationID string
	// ConversationID is its conversation id, if it has one.
	ConversationID string
	// MessageType is the type that chose the handler: the MessageType
	// header, else the AMQP type property, else
	// [Options.DefaultMessageType]. A fallback handler (see
	// [Bus.HandleFallback]) sees the type no handler took, empty if the
	// message has none.
	MessageType string
	// Intent is "command" or "event", as the sender wrote it.
	Intent string
	// ReplyTo is where a Reply goes: the ReplyToAddress header, else the
	// reply_to property. Empty if neither is set.
	ReplyTo string
	// OriginatingAddress is the sender's queue, if it said.
	OriginatingAddress string
	// TimeSent is when it was sent; zero if the header is absent or
	// unreadable. PikaBus 1.x's format is understood.
	TimeSent time.Time
	// Retries is the number of delayed retries it has had (the
	// ErrorRetries header): 0 on its first handling.
	Retries int
	// Queue is the queue it was consumed from.
	Queue string
	// Redelivered reports that the broker delivered it before (see
	// transport.Delivery.Redelivered).
	Redelivered bool
	// Message is the wire message, shared by every handler of the message:
	// read it, do not modify it.
	Message *transport.Message
}

// IncomingFrom returns the message being handled, if ctx is the context of
// a handler (or derived from it); ok is false otherwise.
//
// A handler that called IncomingFrom may keep what it returned, and call
// it again, after it returned. Otherwise the transport may reuse the
// memory of the message once its handler returned (see
// transport.Recycler), and IncomingFrom with the handler's context reports
// ok false from then on.
func IncomingFrom(ctx context.Context) (in Incoming, ok bool) {
	s, _ := ctx.Value(scopeKey{}).(*scope)
	for s != nil && s.in == nil {
		s = s.outer
	}
	if s == nil {
		return Incoming{}, false
	}
	return s.incoming()
}

type scopeKey struct{}

// scope is one handling attempt of a message, or one transaction: it
// collects what is sent within it, to dispatch on success. It is the
// context handlers (and transaction functions) get: a scope is a
// context.Context that answers Value(scopeKey{}) itself, which spares a
// context.WithValue allocation per message.
type scope struct {
	context.Context // the parent: deadline, cancellation, other values

	b     *Bus
	in    *middleware.Message // the message handled; nil for a transaction outside handlers
	h     *handling           // the delivery of in, when the Bus's consumer made it; else nil
	outer *scope              // the enclosing scope of a nested transaction

	mu     sync.Mutex
	outbox []transport.Outgoing
	ended  bool
}

func (s *scope) Value(k any) any {
	if _, ok := k.(scopeKey); ok {
		return s
	}
	return s.Context.Value(k)
}

func (s *scope) String() string { return "bus.scope" }

func (s *scope) init(parent context.Context, b *Bus, in *middleware.Message, outer *scope) {
	s.Context, s.b, s.in, s.outer = parent, b, in, outer
}

// add appends o to the outbox, unless the scope has ended.
func (s *scope) add(o transport.Outgoing) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return ErrScopeEnded
	}
	s.outbox = append(s.outbox, o)
	return nil
}

// finish ends the scope and returns what it collected.
func (s *scope) finish() []transport.Outgoing {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	out := s.outbox
	s.outbox = nil
	return out
}

// incoming returns the metadata of the message being handled. It is read
// on each call (handlers rarely ask twice), which keeps it out of the
// per-message allocation. The message is handed out: its delivery is not
// recycled.
func (s *scope) incoming() (in Incoming, ok bool) {
	ok = s.withIncoming(true, func(m *middleware.Message) { in = s.b.readIncoming(m) })
	return in, ok
}

// withIncoming runs fn with the message being handled while its memory is
// valid, and reports whether it could: the Bus gives a handled delivery
// back to its transport (see [Bus.recycle]) under the same lock, and only
// if nothing exposed it, so fn never reads a map being reused. With expose,
// the message is handed out, and the delivery is never given back.
func (s *scope) withIncoming(expose bool, fn func(m *middleware.Message)) bool {
	if h := s.h; h != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.recycled {
			return false
		}
		if expose {
			h.exposed = true
		}
	}
	fn(s.in)
	return true
}

// readIncoming reads the metadata of m leniently: headers of foreign types
// are ignored, never an error.
func (b *Bus) readIncoming(m *middleware.Message) Incoming {
	h := m.Headers
	n := &b.names
	in := Incoming{
		MessageID:          headerOr(h, n.MessageID, m.ID),
		CorrelationID:      headerOr(h, n.CorrelationID, m.CorrelationID),
		ConversationID:     headerOr(h, n.ConversationID, ""),
		MessageType:        b.messageTypeOf(&m.Message),
		Intent:             headerOr(h, n.Intent, ""),
		ReplyTo:            headerOr(h, n.ReplyToAddress, m.ReplyTo),
		OriginatingAddress: headerOr(h, n.OriginatingAddress, ""),
		Queue:              m.Queue,
		Redelivered:        m.Redelivered,
		Message:            &m.Message,
	}
	if t, ok, err := middleware.HeaderTime(h[n.TimeSent]); ok && err == nil {
		in.TimeSent = t
	}
	if r, ok, err := middleware.HeaderInt(h[n.ErrorRetries]); ok && err == nil && r > 0 {
		in.Retries = int(min(r, 1<<31-1))
	}
	return in
}

// headerOr returns the string header name of h if it is a non-empty string,
// else def.
func headerOr(h transport.Headers, name, def string) string {
	if s, ok := middleware.HeaderString(h[name]); ok && s != "" {
		return s
	}
	return def
}

// messageTypeOf returns the message type of an incoming message: the
// MessageType header, else the AMQP type property unless it merely repeats
// the content type (as PikaBus 1.x wrote it), else
// Options.DefaultMessageType.
func (b *Bus) messageTypeOf(m *transport.Message) string {
	if s, ok := middleware.HeaderString(m.Headers[b.names.MessageType]); ok && s != "" {
		return s
	}
	if m.Type != "" && m.Type != m.ContentType && m.Type != headerOr(m.Headers, b.names.ContentType, "") {
		return m.Type
	}
	return b.opts.DefaultMessageType
}

// scopeFrom returns the active scope of ctx, if any.
func scopeFrom(ctx context.Context) *scope {
	s, _ := ctx.Value(scopeKey{}).(*scope)
	return s
}

// Transaction runs fn with a context in which Send, Publish, Defer and Reply
// collect their messages instead of dispatching them. When fn returns nil,
// the messages are dispatched as one batch and Transaction returns the
// dispatch's error; when fn returns an error they are dropped and that error
// is returned; when fn panics they are dropped and the panic goes on.
//
// Inside a handler, a Transaction's messages join the handler's own when it
// commits: they are dispatched with them, after every handler succeeded.
// Request does not take part: it always sends at once.
//
// A batch is not atomic on the broker: if dispatching it fails, some of its
// messages may have been delivered (see transport.Transport.Dispatch).
//
// With [Options.UnitOfWork] set, a Transaction outside handlers runs as a
// unit of work: the UnitOfWork runs fn and takes charge of its messages
// (package outbox stores them in the same database transaction as fn's
// writes), and Transaction returns its error.
func (b *Bus) Transaction(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	outer := scopeFrom(ctx)
	if outer == nil && b.closed.Load() {
		return fmt.Errorf("%s: transaction: %w", b.name, ErrClosed)
	}
	if outer == nil && b.opts.UnitOfWork != nil {
		return b.transactionInUnit(ctx, fn)
	}
	if outer != nil {
		outer.mu.Lock()
		ended := outer.ended
		outer.mu.Unlock()
		if ended {
			return fmt.Errorf("%s: transaction: %w", b.name, ErrScopeEnded)
		}
	}
	s := &scope{}
	s.init(ctx, b, nil, outer)
	committed := false
	defer func() {
		if !committed {
			releaseAll(s.finish())
		}
	}()
	if err := fn(s); err != nil {
		return err
	}
	committed = true
	out := s.finish()
	if len(out) == 0 {
		return nil
	}
	if outer != nil {
		outer.mu.Lock()
		defer outer.mu.Unlock()
		if outer.ended {
			releaseAll(out)
			return fmt.Errorf("%s: transaction: %w", b.name, ErrScopeEnded)
		}
		outer.outbox = append(outer.outbox, out...)
		return nil
	}
	err = b.batch(ctx, out...)
	releaseAll(out)
	if err != nil {
		return fmt.Errorf("%s: transaction: dispatching %d messages: %w", b.name, len(out), err)
	}
	return nil
}
