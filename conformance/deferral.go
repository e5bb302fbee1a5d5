package conformance

import (
	"testing"
	"time"

	"github.com/busline/busline/transport"
)

func (s *suite) deferralGroup(t *testing.T) {
	noDelayer := lacks(s.caps.delayer, "Delayer")
	s.leafUnless(t, "NotBefore", noDelayer, func(e *env) {
		t := e.t
		q := e.queue("q")
		in := e.inbox(q, transport.ConsumeOptions{})
		late := transport.Message{ID: "late", CorrelationID: "c", ContentType: "text/plain", Type: "T",
			Headers: transport.Headers{"h": "v", "n": int32(1), "death": []any{map[string]any{"count": int64(1)}}}, Body: []byte("late body")}
		now := time.Now()
		due := map[string]time.Time{"late": now.Add(1200 * time.Millisecond), "soon": now.Add(400 * time.Millisecond)}
		e.dispatch(
			transport.Outgoing{RoutingKey: q, Mandatory: true, NotBefore: due["late"], Message: late},
			transport.Outgoing{RoutingKey: q, Mandatory: true, NotBefore: due["soon"], Message: msg("soon")},
			transport.Outgoing{RoutingKey: q, Mandatory: true, Message: msg("now")},
		)
		deadline := due["late"].Add(s.h.DelayTolerance + s.h.Timeout)
		for range 3 {
			var d *transport.Delivery
			select {
			case d = <-in.ch:
			case <-time.After(time.Until(deadline)):
				t.Fatalf("timed out waiting for the deferred messages")
			}
			at := time.Now()
			d.Ack()
			nb, deferred := due[d.ID]
			if !deferred {
				continue
			}
			if at.Before(nb) {
				t.Errorf("message %q deferred until %v arrived %v early", d.ID, nb.Format(time.StampMilli), nb.Sub(at))
			} else if late := at.Sub(nb); late > s.h.DelayTolerance {
				t.Errorf("message %q arrived %v after its NotBefore time, more than Harness.DelayTolerance %v", d.ID, late, s.h.DelayTolerance)
			}
			if d.ID == "late" {
				checkMessage(t, late, d)
				if d.Queue != q || d.Exchange != transport.Direct || d.RoutingKey != q || d.Redelivered {
					t.Errorf("deferred message arrived from queue %q exchange %v key %q redelivered %v, want %q, direct, %q, false",
						d.Queue, d.Exchange, d.RoutingKey, d.Redelivered, q, q)
				}
			}
			delete(due, d.ID)
		}
		in.empty("after the deferred messages")
	})
	s.leafUnless(t, "Past", noDelayer, func(e *env) {
		q := e.queue("q")
		in := e.inbox(q, transport.ConsumeOptions{})
		e.dispatch(transport.Outgoing{RoutingKey: q, Mandatory: true, NotBefore: time.Now().Add(-time.Hour), Message: msg("past")})
		in.expect("past")
	})
	s.leafUnless(t, "Topic", noDelayer, func(e *env) {
		q := e.queue("q", "deferred.topic")
		in := e.inbox(q, transport.ConsumeOptions{})
		err := e.tr.Dispatch(e.ctx(), append(direct(q, "valid"),
			transport.Outgoing{Exchange: transport.Topic, RoutingKey: "deferred.topic", NotBefore: time.Now().Add(time.Hour), Message: msg("deferred")})...)
		is(e.t, err, transport.ErrNotSupported, "Dispatch of a deferred message to the topic exchange")
		in.empty("a batch refused as not supported must send nothing")
	})
	s.leafUnless(t, "MaxDelay", noDelayer, func(e *env) {
		t := e.t
		max := e.tr.(transport.Delayer).MaxDelay()
		if max <= 0 {
			t.Fatalf("MaxDelay = %v, want a positive duration", max)
		}
		q := e.queue("q")
		in := e.inbox(q, transport.ConsumeOptions{})
		within := min(max, time.Minute)
		if err := e.tr.Dispatch(e.ctx(), transport.Outgoing{RoutingKey: q, Mandatory: true, NotBefore: time.Now().Add(within), Message: msg("within")}); err != nil {
			t.Errorf("Dispatch deferred by %v, within MaxDelay %v: %v", within, max, err)
		}
		const century = 100 * 365 * 24 * time.Hour
		if max < century {
			err := e.tr.Dispatch(e.ctx(), transport.Outgoing{RoutingKey: q, Mandatory: true, NotBefore: time.Now().Add(max + time.Hour), Message: msg("beyond")})
			is(t, err, transport.ErrNotSupported, "Dispatch deferred by MaxDelay %v plus an hour", max)
		} else {
			t.Logf("MaxDelay %v is over a century: not checking a longer delay", max)
		}
		in.empty("deferred messages must not arrive early")
	})
	s.leafUnless(t, "Mandatory", noDelayer, func(e *env) {
		missing := e.name("missing")
		nb := time.Now().Add(time.Second)
		err := e.tr.Dispatch(e.ctx(), transport.Outgoing{RoutingKey: missing, Mandatory: true, NotBefore: nb, Message: msg("lost")})
		is(e.t, err, transport.ErrUnroutable, "mandatory Dispatch deferred to a queue that does not exist")
		if err := e.tr.Dispatch(e.ctx(), transport.Outgoing{RoutingKey: missing, NotBefore: nb, Message: msg("dropped")}); err != nil {
			e.t.Errorf("Dispatch of a deferred message that is not mandatory to a missing queue = %v, want nil", err)
		}
	})
	hasDelayer := ""
	if s.caps.delayer {
		hasDelayer = "the transport implements transport.Delayer"
	}
	s.leafUnless(t, "Unsupported", hasDelayer, func(e *env) {
		q := e.queue("q")
		in := e.inbox(q, transport.ConsumeOptions{})
		err := e.tr.Dispatch(e.ctx(), append(direct(q, "valid"),
			transport.Outgoing{RoutingKey: q, NotBefore: time.Now().Add(time.Hour), Message: msg("deferred")})...)
		is(e.t, err, transport.ErrNotSupported, "Dispatch of a deferred message by a transport that is not a Delayer")
		in.empty("a batch refused as not supported must send nothing")
	})
}
