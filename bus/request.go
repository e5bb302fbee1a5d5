package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// Request sends the command req to queue (with [Options.QueuePrefix]
// prepended), waits for the reply and decodes it into an R.
//
// The request carries this Bus's reply queue as its ReplyToAddress and its
// own id as its correlation id; the responder's [Bus.Reply] copies that id,
// and the reply is matched to the request by it, so concurrent requests
// each get their own reply. The reply queue is temporary, private to this
// Bus (and so to this process, even when other instances consume the same
// endpoint queue), and declared on the first Request.
//
// Request returns when the reply arrives, or when ctx is done with an error
// wrapping ctx.Err(): give ctx a deadline. A reply that arrives after that
// is acked and dropped. The responder's handler errors do not come back; a
// responder that fails leaves the requester waiting until ctx is done.
//
// Unlike Send, Request dispatches at once even inside a handler (waiting
// for a reply to a message held back until the handler returns could only
// time out); it inherits the handled message's conversation id, not its
// correlation id. A handler that requests from its own endpoint, with
// Concurrency 1, waits for a message only it could handle. Request refuses
// [WithCorrelationID], [WithReplyTo] and deferral, and fails with
// [ErrClosed] once the Bus is shut down or closed.
func Request[R any](ctx context.Context, b *Bus, queue string, req any, opts ...SendOption) (R, error) {
	var zero R
	cfg := sendConfig{}
	for _, o := range opts {
		o.applySend(&cfg)
	}
	target := b.opts.QueuePrefix + queue
	if cfg.correlationID != "" || cfg.replyToSet {
		return zero, b.opError(opRequest, target, req, &cfg, errors.New("Request sets the correlation id and the reply address itself"))
	}
	if err := b.ensureReplies(ctx); err != nil {
		return zero, b.opError(opRequest, target, req, &cfg, err)
	}
	cfg.requestID = cfg.messageID
	if cfg.requestID == "" {
		cfg.requestID = NewMessageID()
	}
	ch, err := b.replies.wait(cfg.requestID)
	if err != nil {
		return zero, b.opError(opRequest, target, req, &cfg, err)
	}
	defer b.replies.forget(cfg.requestID)
	if err := b.post(ctx, opRequest, target, req, &cfg); err != nil {
		return zero, err
	}
	select {
	case m := <-ch:
		var r R
		if err := b.decode(m, &r); err != nil {
			return zero, b.opError(opRequest, target, req, &cfg, fmt.Errorf("reply: %w", err))
		}
		return r, nil
	case <-ctx.Done():
		return zero, b.opError(opRequest, target, req, &cfg, fmt.Errorf("no reply to message %q: %w", cfg.requestID, ctx.Err()))
	case <-b.done:
		return zero, b.opError(opRequest, target, req, &cfg, fmt.Errorf("no reply to message %q: %w", cfg.requestID, ErrClosed))
	}
}

// replies is a Bus's reply queue and the requests waiting on it.
type replies struct {
	queue    string
	queueBox any

	mu       sync.Mutex // held while the queue is declared
	consumer transport.Consumer
	closed   bool

	pmu     sync.Mutex
	pending map[string]chan *transport.Message
}

// replyQueueName names the reply queue of an endpoint: its queue (or
// "busline" for a send-only one, with the prefix) and a random suffix.
func replyQueueName(endpoint, prefix string) string {
	base := endpoint
	if base == "" {
		base = prefix + "busline"
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	name := base + ".reply-" + hex.EncodeToString(r[:])
	if len(name) > transport.MaxNameLength {
		name = "busline.reply-" + hex.EncodeToString(r[:])
	}
	return name
}

// ensureReplies declares the reply queue and starts consuming it, once.
func (b *Bus) ensureReplies(ctx context.Context) error {
	r := &b.replies
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if r.consumer != nil {
		return nil
	}
	if err := b.t.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: r.queue, Temporary: true}}); err != nil {
		return fmt.Errorf("declaring reply queue %q: %w", r.queue, err)
	}
	c, err := b.t.Consume(ctx, r.queue, transport.ConsumeOptions{Concurrency: 1, Prefetch: 16, Tag: r.queue}, b.deliverReply)
	if err != nil {
		return fmt.Errorf("consuming reply queue %q: %w", r.queue, err)
	}
	r.consumer = c
	b.monitor(c, r.queue)
	return nil
}

// wait registers a request waiting for the reply correlated with id.
func (r *replies) wait(id string) (chan *transport.Message, error) {
	ch := make(chan *transport.Message, 1)
	r.pmu.Lock()
	defer r.pmu.Unlock()
	if _, dup := r.pending[id]; dup {
		return nil, fmt.Errorf("another request with message id %q is waiting for its reply", id)
	}
	if r.pending == nil {
		r.pending = make(map[string]chan *transport.Message)
	}
	r.pending[id] = ch
	return ch, nil
}

func (r *replies) forget(id string) {
	r.pmu.Lock()
	delete(r.pending, id)
	r.pmu.Unlock()
}

// deliverReply hands a reply to its request, or drops it, within
// Hooks.Handle if it is set.
func (b *Bus) deliverReply(ctx context.Context, d *transport.Delivery) {
	if b.hooks.Handle == nil {
		b.handReply(ctx, d)
		return
	}
	m := middleware.Message{Message: d.Message, Queue: d.Queue, Redelivered: d.Redelivered}
	_ = b.hooks.Handle(ctx, d, &m, func(ctx context.Context, _ *middleware.Message) error {
		b.handReply(ctx, d)
		return nil
	})
}

func (b *Bus) handReply(ctx context.Context, d *transport.Delivery) {
	corr := headerOr(d.Headers, b.names.CorrelationID, d.CorrelationID)
	r := &b.replies
	r.pmu.Lock()
	ch, ok := r.pending[corr]
	delete(r.pending, corr)
	r.pmu.Unlock()
	if ok {
		m := d.Message
		ch <- &m
	} else {
		b.log.WarnContext(ctx, "reply to no waiting request dropped (it came too late, or twice)",
			"reply_queue", d.Queue, "correlation_id", corr, "message_id", d.ID, "message_type", b.messageTypeOf(&d.Message))
	}
	if err := d.Ack(); err != nil {
		b.log.WarnContext(ctx, "ack of reply failed", "reply_queue", d.Queue, "message_id", d.ID, "error", err)
	}
}

// closeReplies stops the reply consumer; graceful lets a reply being
// delivered finish.
func (b *Bus) closeReplies(ctx context.Context, graceful bool) error {
	r := &b.replies
	r.mu.Lock()
	r.closed = true
	c := r.consumer
	r.mu.Unlock()
	if c == nil {
		return nil
	}
	if graceful {
		return c.Drain(ctx)
	}
	return c.Close()
}
