// Package sagatest unit-tests a saga's handlers without a broker or a
// store: given a state (or none) and a message, it runs the handler of the
// message's type and returns the new state, the messages the handler sent
// and the timeouts it asked for.
//
//	res, err := sagatest.Handle(sg, &Order{Paid: true}, StockReserved{OrderID: "o1"})
//	// res.State.Shipped, res.Sent, res.Timeouts, res.Completed
//
// Whole flows, with the bus's retries, deferrals and timeouts, run on the
// memory broker with saga.NewMemoryStore, under testing/synctest so that a
// 30-minute timeout takes no real time.
package sagatest

import (
	"context"

	"github.com/busline/busline/saga"
)

// ID is the instance id of the instances Handle makes.
const ID = "sagatest-instance"

// Result is what one handling did.
type Result[S any] struct {
	// State is the state after the handler ran.
	State S
	// Started reports that the message started the instance (Handle was
	// given no state).
	Started bool
	// Completed reports that the handler completed the instance.
	Completed bool
	// Sent is what the handler sent (Send, Publish, Defer, Reply,
	// ReplyToOriginator), in order.
	Sent []saga.Effect
	// Timeouts are the timeouts it asked for, in order.
	Timeouts []saga.Effect
}

// Messages returns the messages of Sent, in order.
func (r Result[S]) Messages() []any {
	out := make([]any, len(r.Sent))
	for i, e := range r.Sent {
		out[i] = e.Message
	}
	return out
}

// Options tune [HandleWith].
type Options struct {
	// Originator is the reply address of the message that started the
	// instance, for ReplyToOriginator. Empty means "originator".
	Originator string
	// Context is the handler's context; nil means context.Background().
	Context context.Context
}

// Handle runs sg's handler of msg's type on an instance in state; a nil
// state means no instance exists yet: msg must start one (its type given
// to saga.StartedBy), and the handler sees the zero state. A timeout
// message runs on the instance whatever its correlation. It returns the
// handler's error, or an error if the saga is ill-defined or msg has no
// handler, does not start the saga, or correlates to another instance than
// the previous message of the test (see [Flow]).
func Handle[S any](sg *saga.Saga[S], state *S, msg any) (Result[S], error) {
	return HandleWith(sg, state, msg, Options{})
}

func version[S any](state *S) int64 {
	if state == nil {
		return 0
	}
	return 1
}

// HandleWith is [Handle] with options.
func HandleWith[S any](sg *saga.Saga[S], state *S, msg any, opts Options) (Result[S], error) {
	corr, _ := sg.Correlate(msg)
	return handle(sg, state, msg, corr, opts)
}

func handle[S any](sg *saga.Saga[S], state *S, msg any, correlation string, opts Options) (Result[S], error) {
	ctx := opts.Context
	if ctx == nil {
		ctx = context.Background()
	}
	if opts.Originator == "" {
		opts.Originator = "originator"
	}
	var s S
	if state != nil {
		s = *state
	}
	if state == nil {
		correlation, _ = sg.Correlate(msg)
	}
	in := saga.NewInstance(s, saga.Record{ID: ID, Correlation: correlation, Version: version(state),
		Originator: opts.Originator, OriginatorCorrelationID: "originator-correlation-id"})
	res := Result[S]{Started: state == nil}
	if err := sg.Apply(ctx, in, msg); err != nil {
		return res, err
	}
	res.State, res.Completed = in.State, in.Completed()
	for _, e := range in.Effects() {
		if e.Kind == saga.EffectTimeout {
			res.Timeouts = append(res.Timeouts, e)
		} else {
			res.Sent = append(res.Sent, e)
		}
	}
	return res, nil
}

// Flow runs messages one after the other on one instance, as a store
// would keep it, without a broker: a scenario test of a saga's logic. The
// first message must start the instance; Flow checks that each later one
// correlates to it.
type Flow[S any] struct {
	sg          *saga.Saga[S]
	opts        Options
	state       *S
	correlation string
	completed   bool
}

// NewFlow returns a Flow for sg with no instance yet.
func NewFlow[S any](sg *saga.Saga[S], opts Options) *Flow[S] {
	return &Flow[S]{sg: sg, opts: opts}
}

// Handle handles msg on the flow's instance and keeps its new state. A
// message after the instance completed changes nothing and returns a zero
// Result with Completed set, as the saga drops it.
func (f *Flow[S]) Handle(msg any) (Result[S], error) {
	if f.completed {
		return Result[S]{Completed: true}, nil
	}
	res, err := handle(f.sg, f.state, msg, f.correlation, f.opts)
	if err != nil {
		return res, err
	}
	if f.state == nil {
		f.correlation, _ = f.sg.Correlate(msg)
	}
	s := res.State
	f.state = &s
	f.completed = res.Completed
	return res, nil
}

// State returns the instance's state, and false before it started.
func (f *Flow[S]) State() (S, bool) {
	if f.state == nil {
		var zero S
		return zero, false
	}
	return *f.state, true
}
