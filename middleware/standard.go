package middleware

import (
	"errors"
	"log/slog"
	"time"
)

// StandardOptions configure [Standard]. The zero value is PikaBus's
// recoverability: deferral honoured, five delayed retries with
// [DefaultBackoff], then the queue "error"; no immediate retries, no
// timeout.
type StandardOptions struct {
	// Deferral configures the Deferral stage.
	Deferral DeferralOptions
	// NoDeferral leaves the Deferral stage out, for a transport without
	// transport.Delayer: a message whose DeferredTime is in the future is
	// then handled at once.
	NoDeferral bool
	// ErrorQueue configures the ErrorQueue stage.
	ErrorQueue ErrorQueueOptions
	// Retry configures the Retry stage. With a transport without
	// transport.Delayer, set Retry.MaxRetries to NoRetries.
	Retry RetryOptions
	// Timeout, when positive, adds a Timeout stage of that duration inside
	// Recover.
	Timeout time.Duration
	// Headers are the header names of every stage whose own options leave
	// them zero. The zero value means [DefaultHeaderNames].
	Headers HeaderNames
	// Logger is the logger of every stage whose own options leave it nil.
	// Nil means silent.
	Logger *slog.Logger
}

// Standard returns busline's standard pipeline over s, outermost first:
//
//	Deferral, ErrorQueue, Retry, Recover, Timeout (if asked for)
//
// which is what package bus installs by default. Each stage is also
// available on its own, to build a different chain: Standard is
// Chain(Deferral(s, …), ErrorQueue(s, …), Retry(s, …), Recover(), …). It
// fails as the constructors of its stages do.
func Standard(s Sender, opts StandardOptions) (Middleware, error) {
	if s == nil {
		return nil, errors.New("middleware.Standard: nil Sender")
	}
	if opts.Deferral.Headers == (HeaderNames{}) {
		opts.Deferral.Headers = opts.Headers
	}
	if opts.ErrorQueue.Headers == (HeaderNames{}) {
		opts.ErrorQueue.Headers = opts.Headers
	}
	if opts.Retry.Headers == (HeaderNames{}) {
		opts.Retry.Headers = opts.Headers
	}
	if opts.Deferral.Logger == nil {
		opts.Deferral.Logger = opts.Logger
	}
	if opts.ErrorQueue.Logger == nil {
		opts.ErrorQueue.Logger = opts.Logger
	}
	if opts.Retry.Logger == nil {
		opts.Retry.Logger = opts.Logger
	}
	var stages []Middleware
	if !opts.NoDeferral {
		d, err := Deferral(s, opts.Deferral)
		if err != nil {
			return nil, err
		}
		stages = append(stages, d)
	}
	eq, err := ErrorQueue(s, opts.ErrorQueue)
	if err != nil {
		return nil, err
	}
	r, err := Retry(s, opts.Retry)
	if err != nil {
		return nil, err
	}
	stages = append(stages, eq, r, Recover())
	if opts.Timeout > 0 {
		t, err := Timeout(opts.Timeout)
		if err != nil {
			return nil, err
		}
		stages = append(stages, t)
	}
	return Chain(stages...), nil
}
