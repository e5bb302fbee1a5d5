package amqp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/busline/busline/transport"
)

var _ transport.AsyncDispatcher = (*Transport)(nil)

// DispatchAsync implements [transport.AsyncDispatcher] with deferred
// confirms: the message joins the queue of a publishing channel's writer
// and DispatchAsync returns; the channel's listener calls done when the
// broker's confirm (after its return, for an unroutable mandatory message)
// arrives. No goroutine waits per message, so one caller keeps as many
// confirms in flight as the channels' windows hold
// (Options.ConfirmWindow each): past that, DispatchAsync waits for room,
// bounded by ctx.
//
// The first attempt is the fast path. A message it cannot settle (a nack, a
// lost channel or connection, a return that may come from a destination
// binding gone stale) is handed to [Transport.Dispatch] on a goroutine of
// the transport, which publishes it again as Dispatch does, until it is
// confirmed, fails for good or the transport closes; done then gets
// Dispatch's verdict. So a message may be published twice where Dispatch
// would have published it twice too: after a nack or an unconfirmed write
// ("may have been delivered").
//
// The messages posted to one routing key go through one channel, so that
// they reach the broker in the order they were posted, as long as none
// needs a second attempt.
//
// done is called on the writer's or the listener's goroutine of a channel,
// or on the goroutine that retries; it must not block, since it holds up
// the confirms of every other message of that channel.
func (t *Transport) DispatchAsync(ctx context.Context, o transport.Outgoing, done func(error)) error {
	if err := t.checkOpen(); err != nil {
		return fmt.Errorf("amqp: dispatch: %w", err)
	}
	msgs := []transport.Outgoing{o}
	d, err := t.plan(&msgs[0], time.Now())
	if err != nil {
		return dispatchError(&o, 0, err)
	}
	errs := []error{nil}
	if err := t.routes.ensure(ctx, msgs, errs); err != nil {
		return err
	}
	if errs[0] != nil {
		// A mandatory message to a queue that does not exist: that is the
		// broker's verdict, known before publishing.
		done(dispatchError(&o, 0, errs[0]))
		return nil
	}
	s, err := t.pub.wait(ctx, nil)
	if err == nil {
		err = t.pub.unblocked(ctx)
	}
	if err != nil {
		return dispatchError(&o, 0, giveUp(err, nil, false))
	}
	pc, err := t.pool.channelFor(s, d.key)
	if err != nil {
		if errors.Is(err, transport.ErrClosed) {
			return dispatchError(&o, 0, giveUp(err, nil, false))
		}
		return t.redispatch(o, done)
	}
	r := &pubReq{exchange: d.exchange, key: d.key, mandatory: d.mandatory, msg: d.msg,
		ctx: context.Background()}
	r.async = func(err error) {
		if err == nil {
			done(nil)
			return
		}
		if errors.Is(err, transport.ErrUnroutable) && o.Exchange == transport.Topic {
			// No binding of the transport's own is involved: final.
			done(dispatchError(&o, 0, err))
			return
		}
		if errors.Is(err, transport.ErrClosed) || t.checkOpen() != nil {
			done(dispatchError(&o, 0, giveUp(transport.ErrClosed, nil, r.wrote.Load())))
			return
		}
		if err := t.redispatch(o, done); err != nil {
			done(err)
		}
	}
	select {
	case pc.reqs <- r:
		return nil
	case <-pc.writerDone:
		return t.redispatch(o, done)
	case <-ctx.Done():
		return dispatchError(&o, 0, giveUp(ctx.Err(), nil, false))
	}
}

// redispatch publishes o with Dispatch, with its retries, on a goroutine of
// the transport, and gives done the verdict.
func (t *Transport) redispatch(o transport.Outgoing, done func(error)) error {
	if !t.spawn(func() { done(t.Dispatch(context.Background(), o)) }) {
		return dispatchError(&o, 0, giveUp(transport.ErrClosed, nil, false))
	}
	return nil
}
