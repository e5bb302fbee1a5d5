package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// hookRecord is a Failure as a hook saw it, with what it could read of the
// message then.
type hookRecord struct {
	hook    string
	f       middleware.Failure
	body    string
	retries any // the ErrorRetries header of the message the hook was given
	queued  int // messages in the copy's queue when the hook ran
}

// The Retry stage reports each delayed retry once its copy is dispatched,
// the ErrorQueue stage each forward; neither reports what it could not do.
func TestHooks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker("orders", "error")
		var got []hookRecord
		record := func(hook string) func(context.Context, middleware.Failure) {
			return func(ctx context.Context, f middleware.Failure) {
				got = append(got, hookRecord{hook, f, string(f.Message.Body), f.Message.Headers[names.ErrorRetries], len(b.messages(f.Queue))})
			}
		}
		backoff := middleware.LinearBackoff(time.Second)
		h := standard(t, delaying{b}, middleware.StandardOptions{
			Retry:      middleware.RetryOptions{MaxRetries: middleware.Retries(2), Immediate: 1, Backoff: backoff, OnRetry: record("retry")},
			ErrorQueue: middleware.ErrorQueueOptions{OnForward: record("forward")},
		})(func(ctx context.Context, m *middleware.Message) error {
			if string(m.Body) == `{"order":"bad"}` {
				return middleware.Permanent(errors.New("bad order"))
			}
			return errors.New("database down")
		})
		b.put("orders", order("m1"))
		b.put("orders", order("bad"))
		for {
			_, err, ok := deliver(t, t.Context(), b, "orders", h)
			if !ok {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		want := []string{
			"retry m1 retries=1 delay=1s queue=orders err=database down",
			"forward bad retries=0 delay=0s queue=error err=bad order",
			"retry m1 retries=2 delay=2s queue=orders err=database down",
			"forward m1 retries=2 delay=0s queue=error err=database down (gave up after 2 delayed retries)",
		}
		if len(got) != len(want) {
			t.Fatalf("hooks called %d times: %+v", len(got), got)
		}
		for i, r := range got {
			s := fmt.Sprintf("%s %s retries=%d delay=%v queue=%s err=%v", r.hook, r.f.MessageID, r.f.Retries, r.f.Delay, r.f.Queue, r.f.Err)
			if s != want[i] {
				t.Errorf("hook %d: %s\n          want %s", i, s, want[i])
			}
			if r.f.Message.Queue != "orders" || r.body != `{"order":"`+r.f.MessageID+`"}` {
				t.Errorf("hook %d was given the message %+v", i, r.f.Message)
			}
			// The message as received, not the stage's copy; the copy
			// is in its queue when the hook runs.
			if r.hook == "retry" && r.retries != nil && r.retries != int32(r.f.Retries-1) {
				t.Errorf("hook %d: the message given has ErrorRetries %v", i, r.retries)
			}
			if r.queued == 0 && r.hook == "forward" {
				t.Errorf("hook %d ran before its copy was in %s", i, r.f.Queue)
			}
		}
	})
}

func TestHooksNotCalledWhenForwardingFails(t *testing.T) {
	for _, q := range []string{"orders", "error"} {
		b := newBroker("orders", "error")
		b.fail = func(ctx context.Context, o transport.Outgoing) error {
			if o.RoutingKey == q {
				return errors.New("broker down")
			}
			return nil
		}
		called := 0
		hook := func(context.Context, middleware.Failure) { called++ }
		h := standard(t, delaying{b}, middleware.StandardOptions{
			Retry:      middleware.RetryOptions{OnRetry: hook},
			ErrorQueue: middleware.ErrorQueueOptions{OnForward: hook},
		})(failWith(errors.New("transient")))
		m := order("m1")
		if q == "error" {
			m.Headers[names.ErrorRetries] = int32(5) // no retry left
		}
		if err := h(t.Context(), &middleware.Message{Message: m, Queue: "orders"}); err == nil {
			t.Fatalf("%s down: pipeline returned nil", q)
		}
		if called != 0 {
			t.Errorf("%s down: hooks called %d times", q, called)
		}
	}
}
