package amqp

import (
	"context"

	"github.com/busline/busline/transport"
)

// NoDelayTransport is a RabbitMQ transport without deferred delivery, for
// accounts that may not configure the delay levels' exchanges and queues.
// [DialNoDelay] returns it. It is a [Transport] in every way but one: it
// declares no delay levels, refuses a message whose NotBefore is in the
// future with [transport.ErrNotSupported], and so does not implement
// [transport.Delayer]: it has no MaxDelay method, and a caller that
// discovers capabilities by type assertion, as package bus does, sees that
// it cannot defer. It implements [transport.Transport],
// [transport.Inspector], [transport.Getter], [transport.QueueDeleter],
// [transport.Watcher], [transport.HealthChecker] and
// [transport.AsyncDispatcher].
//
// A message deferred by another service through the delay levels of the
// same broker (with the same Options.DelayPrefix) is still delivered as
// sent, its dead-lettering headers removed.
type NoDelayTransport struct {
	t *Transport
}

var (
	_ transport.Transport       = (*NoDelayTransport)(nil)
	_ transport.Inspector       = (*NoDelayTransport)(nil)
	_ transport.Getter          = (*NoDelayTransport)(nil)
	_ transport.QueueDeleter    = (*NoDelayTransport)(nil)
	_ transport.Watcher         = (*NoDelayTransport)(nil)
	_ transport.HealthChecker   = (*NoDelayTransport)(nil)
	_ transport.AsyncDispatcher = (*NoDelayTransport)(nil)
	_ transport.ExchangeBinder  = (*NoDelayTransport)(nil)
	_ transport.ExchangeBinder  = (*Transport)(nil)
)

// DialNoDelay is [Dial] for a transport without deferred delivery: it
// declares the two exchanges but no delay levels, and its queues are not
// bound on the delay levels' delivery exchange. So it needs configure
// permission on the two exchanges and the endpoint queues only.
// Options.DelayLevels is ignored.
//
// Package bus fits its standard pipeline to it by itself: no deferral, and
// immediate retries instead of delayed ones (see bus.New).
func DialNoDelay(ctx context.Context, url string, opts Options) (*NoDelayTransport, error) {
	t, err := dial(ctx, url, opts, true)
	if err != nil {
		return nil, err
	}
	return &NoDelayTransport{t: t}, nil
}

// Declare is [Transport.Declare].
func (n *NoDelayTransport) Declare(ctx context.Context, tp transport.Topology) error {
	return n.t.Declare(ctx, tp)
}

// Bind is [Transport.Bind].
func (n *NoDelayTransport) Bind(ctx context.Context, queue, pattern string) error {
	return n.t.Bind(ctx, queue, pattern)
}

// Unbind is [Transport.Unbind].
func (n *NoDelayTransport) Unbind(ctx context.Context, queue, pattern string) error {
	return n.t.Unbind(ctx, queue, pattern)
}

// Dispatch is [Transport.Dispatch], except that a message whose NotBefore
// is in the future fails the whole call with [transport.ErrNotSupported]
// and nothing is sent.
func (n *NoDelayTransport) Dispatch(ctx context.Context, msgs ...transport.Outgoing) error {
	return n.t.Dispatch(ctx, msgs...)
}

// Consume is [Transport.Consume].
func (n *NoDelayTransport) Consume(ctx context.Context, queue string, opts transport.ConsumeOptions, h transport.Handler) (transport.Consumer, error) {
	return n.t.Consume(ctx, queue, opts, h)
}

// Close is [Transport.Close].
func (n *NoDelayTransport) Close() error { return n.t.Close() }

// BindExchange implements [transport.ExchangeBinder] as
// [Transport.BindExchange] does.
func (n *NoDelayTransport) BindExchange(ctx context.Context, exchange, queue, pattern string) error {
	return n.t.BindExchange(ctx, exchange, queue, pattern)
}

// UnbindExchange implements [transport.ExchangeBinder].
func (n *NoDelayTransport) UnbindExchange(ctx context.Context, exchange, queue, pattern string) error {
	return n.t.UnbindExchange(ctx, exchange, queue, pattern)
}

// Inspect is [Transport.Inspect].
func (n *NoDelayTransport) Inspect(ctx context.Context, queue string) (transport.QueueInfo, error) {
	return n.t.Inspect(ctx, queue)
}

// Get is [Transport.Get].
func (n *NoDelayTransport) Get(ctx context.Context, queue string) (*transport.Delivery, bool, error) {
	return n.t.Get(ctx, queue)
}

// DeleteQueue is [Transport.DeleteQueue].
func (n *NoDelayTransport) DeleteQueue(ctx context.Context, queue string) error {
	return n.t.DeleteQueue(ctx, queue)
}

// Watch is [Transport.Watch].
func (n *NoDelayTransport) Watch(f func(transport.Event)) (stop func()) { return n.t.Watch(f) }

// DispatchAsync implements [transport.AsyncDispatcher] as
// [Transport.DispatchAsync] does; a deferred message is refused, as by
// Dispatch.
func (n *NoDelayTransport) DispatchAsync(ctx context.Context, o transport.Outgoing, done func(error)) error {
	return n.t.DispatchAsync(ctx, o, done)
}

// Health is [Transport.Health].
func (n *NoDelayTransport) Health(ctx context.Context) error { return n.t.Health(ctx) }
