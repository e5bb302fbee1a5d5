package middleware

import (
	"context"
	"errors"
	"fmt"

	"github.com/busline/busline/transport"
)

// HeaderFunc computes a header's value for one outgoing message; ok false
// leaves the header unset. ctx is the context of the Dispatch call (the
// handler's, when a handler sends), so a HeaderFunc can copy values from it,
// such as a trace or tenant id. It must not change o, and it is called
// concurrently.
type HeaderFunc func(ctx context.Context, o *transport.Outgoing) (v any, ok bool)

// StampOptions configure the [Stamp] dispatch stage: which headers it sets.
// At least one header must be given.
type StampOptions struct {
	// Headers are set to these values on every message. Values must be of
	// a type transport.Headers carries.
	Headers transport.Headers
	// Funcs compute a header per message. A name may not be in both
	// Headers and Funcs.
	Funcs map[string]HeaderFunc
	// Overwrite replaces a header the message already has. By default a
	// header already set (even to nil) is left alone.
	Overwrite bool
}

// Stamp returns a dispatch stage that sets headers on every outgoing
// message, from static values ([StampOptions.Headers]) or computed per
// message ([StampOptions.Funcs]), without overwriting a header already set
// unless [StampOptions.Overwrite] says so.
//
// The messages passed to a Dispatcher belong to its caller, so Stamp never
// changes them: a message it stamps is passed on with a copy of its headers
// (and the batch as a copy of the slice). A batch it has nothing to add to
// is passed on as it came, without allocating.
func Stamp(opts StampOptions) (DispatchMiddleware, error) {
	if len(opts.Headers) == 0 && len(opts.Funcs) == 0 {
		return nil, errors.New("middleware.Stamp: no headers to stamp")
	}
	if err := opts.Headers.Validate(); err != nil {
		return nil, fmt.Errorf("middleware.Stamp: %w", err)
	}
	st := &stamp{overwrite: opts.Overwrite}
	for k, v := range opts.Headers {
		if k == "" {
			return nil, errors.New("middleware.Stamp: empty header name")
		}
		st.static = append(st.static, staticHeader{k, v})
	}
	for k, f := range opts.Funcs {
		if k == "" {
			return nil, errors.New("middleware.Stamp: empty header name")
		}
		if f == nil {
			return nil, fmt.Errorf("middleware.Stamp: nil HeaderFunc for %q", k)
		}
		if _, dup := opts.Headers[k]; dup {
			return nil, fmt.Errorf("middleware.Stamp: header %q is in both Headers and Funcs", k)
		}
		st.funcs = append(st.funcs, funcHeader{k, f})
	}
	return func(next Dispatcher) Dispatcher {
		return func(ctx context.Context, msgs ...transport.Outgoing) error {
			return next(ctx, st.apply(ctx, msgs)...)
		}
	}, nil
}

type staticHeader struct {
	name  string
	value any
}

type funcHeader struct {
	name string
	f    HeaderFunc
}

type stamp struct {
	static    []staticHeader
	funcs     []funcHeader
	overwrite bool
}

// apply returns msgs with the headers stamped, copying the slice and each
// changed message's headers on first change.
func (st *stamp) apply(ctx context.Context, msgs []transport.Outgoing) []transport.Outgoing {
	out := msgs
	copied := false
	for i := range msgs {
		var h transport.Headers
		set := func(k string, v any) {
			if h == nil {
				h = withHeaders(msgs[i].Message.Headers, len(st.static)+len(st.funcs))
			}
			h[k] = v
		}
		for _, s := range st.static {
			if st.has(msgs[i].Message.Headers, s.name) {
				continue
			}
			set(s.name, s.value)
		}
		for _, f := range st.funcs {
			if st.has(msgs[i].Message.Headers, f.name) {
				continue
			}
			if v, ok := f.f(ctx, &msgs[i]); ok {
				set(f.name, v)
			}
		}
		if h == nil {
			continue
		}
		if !copied {
			out = append([]transport.Outgoing(nil), msgs...)
			copied = true
		}
		out[i].Message.Headers = h
	}
	return out
}

func (st *stamp) has(h transport.Headers, k string) bool {
	if st.overwrite {
		return false
	}
	_, ok := h[k]
	return ok
}
