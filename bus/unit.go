package bus

import (
	"context"
	"fmt"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// UnitOfWork wraps a unit of work of the Bus: the handling of one message
// by its handlers, or a [Bus.Transaction] outside handlers. It is the hook
// through which a transactional outbox (package outbox of the nested module
// github.com/busline/busline/outbox) makes a handler's database writes and
// the messages it sends one atomic change; see [Options.UnitOfWork].
//
// A UnitOfWork calls [Unit.Run] at most once, with a context derived from
// ctx (values it adds, such as a database transaction, reach the handlers),
// and takes charge of the messages Run returns: the Bus does not dispatch
// them. To dispatch them it uses the Bus's [Bus.Sender]. It may also decide
// not to call Run at all (a message it knows was handled already): the
// message is then acked as if its handlers had succeeded. The error it
// returns is the handling's (retried like a handler's error) or the
// Transaction's.
type UnitOfWork func(ctx context.Context, u *Unit) error

// Unit is one unit of work given to a [UnitOfWork].
type Unit struct {
	// Bus is the endpoint doing the work.
	Bus *Bus
	// Incoming is the message being handled, as [IncomingFrom] reads it;
	// nil for a Transaction outside handlers.
	Incoming *Incoming

	run func(ctx context.Context) ([]transport.Outgoing, error)
	ran bool
	out []transport.Outgoing
}

// Run runs the work with the context ctx: the message's handlers, or the
// Transaction's function. It returns the messages they sent (Send,
// Publish, Defer, Reply), in order, not dispatched; or the error of the
// first handler that failed (or of the function), and then no message.
// A panic in the work goes on through Run.
//
// The messages, their header maps and their bodies belong to the Bus: they
// are valid until the UnitOfWork returns. Copy what must outlive it. Run
// fails if called twice.
func (u *Unit) Run(ctx context.Context) ([]transport.Outgoing, error) {
	if u.ran {
		return nil, fmt.Errorf("%s: Unit.Run called twice", u.Bus.name)
	}
	u.ran = true
	out, err := u.run(ctx)
	u.out = out
	return out, err
}

// release gives back the header maps of what Run returned.
func (u *Unit) release() {
	releaseAll(u.out)
	u.out = nil
}

// handleInUnit runs the handlers hs of m under the UnitOfWork, in scope s.
func (b *Bus) handleInUnit(ctx context.Context, m *middleware.Message, s *scope, hs []handlerEntry) error {
	in := b.readIncoming(m)
	u := &Unit{Bus: b, Incoming: &in}
	u.run = func(ctx context.Context) ([]transport.Outgoing, error) {
		s.init(ctx, b, m, nil)
		for i := range hs {
			if err := hs[i].call(s, b, &m.Message); err != nil {
				releaseAll(s.finish())
				return nil, err
			}
		}
		return s.finish(), nil
	}
	defer func() {
		if !u.ran {
			s.finish()
		}
		u.release()
	}()
	return b.opts.UnitOfWork(ctx, u)
}

// transactionInUnit runs fn as a Transaction outside handlers under the
// UnitOfWork.
func (b *Bus) transactionInUnit(ctx context.Context, fn func(ctx context.Context) error) error {
	u := &Unit{Bus: b}
	u.run = func(ctx context.Context) (out []transport.Outgoing, err error) {
		s := &scope{}
		s.init(ctx, b, nil, nil)
		committed := false
		defer func() {
			if !committed {
				releaseAll(s.finish())
			}
		}()
		if err := fn(s); err != nil {
			return nil, err
		}
		committed = true
		return s.finish(), nil
	}
	defer u.release()
	return b.opts.UnitOfWork(ctx, u)
}
