package middleware_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

type tenantKey struct{}

func TestStamp(t *testing.T) {
	tenant := func(ctx context.Context, o *transport.Outgoing) (any, bool) {
		v, ok := ctx.Value(tenantKey{}).(string)
		return v, ok
	}
	route := func(ctx context.Context, o *transport.Outgoing) (any, bool) { return o.RoutingKey, true }
	for _, tc := range []struct {
		name      string
		overwrite bool
		in        transport.Headers
		want      transport.Headers
	}{
		{"empty", false, nil, transport.Headers{"app": "shop", "tenant": "t1", "route": "orders"}},
		{"kept", false, transport.Headers{"app": "mine", "route": nil}, transport.Headers{"app": "mine", "tenant": "t1", "route": nil}},
		{"overwritten", true, transport.Headers{"app": "mine", "route": nil, "other": 1}, transport.Headers{"app": "shop", "tenant": "t1", "route": "orders", "other": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mw, err := middleware.Stamp(middleware.StampOptions{
				Headers:   transport.Headers{"app": "shop"},
				Funcs:     map[string]middleware.HeaderFunc{"tenant": tenant, "route": route},
				Overwrite: tc.overwrite,
			})
			if err != nil {
				t.Fatal(err)
			}
			var got []transport.Outgoing
			d := mw(func(ctx context.Context, msgs ...transport.Outgoing) error { got = msgs; return nil })
			in := []transport.Outgoing{{RoutingKey: "orders", Message: transport.Message{Headers: tc.in}}}
			before := tc.in.Clone()
			ctx := context.WithValue(t.Context(), tenantKey{}, "t1")
			if err := d(ctx, in...); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got[0].Message.Headers, tc.want) {
				t.Errorf("headers %v, want %v", got[0].Message.Headers, tc.want)
			}
			if !reflect.DeepEqual(in[0].Message.Headers, before) {
				t.Errorf("the caller's headers changed: %v", in[0].Message.Headers)
			}
		})
	}
}

func TestStampNothingToDo(t *testing.T) {
	mw, err := middleware.Stamp(middleware.StampOptions{Headers: transport.Headers{"app": "shop"}})
	if err != nil {
		t.Fatal(err)
	}
	d := mw(func(ctx context.Context, msgs ...transport.Outgoing) error { return nil })
	msgs := []transport.Outgoing{{RoutingKey: "a", Message: transport.Message{Headers: transport.Headers{"app": "x"}}}}
	ctx := t.Context()
	if n := testing.AllocsPerRun(100, func() { _ = d(ctx, msgs...) }); n != 0 {
		t.Fatalf("%v allocations for a batch with nothing to stamp", n)
	}
	if _, err := middleware.Stamp(middleware.StampOptions{Headers: transport.Headers{"a": 1}, Funcs: map[string]middleware.HeaderFunc{"a": nil}}); err == nil {
		t.Fatal("nil HeaderFunc accepted")
	}
	f := func(context.Context, *transport.Outgoing) (any, bool) { return nil, false }
	if _, err := middleware.Stamp(middleware.StampOptions{Headers: transport.Headers{"a": 1}, Funcs: map[string]middleware.HeaderFunc{"a": f}}); err == nil {
		t.Fatal("header in both Headers and Funcs accepted")
	}
}
