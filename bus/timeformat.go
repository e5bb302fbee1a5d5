package bus

import (
	"context"
	"fmt"
	"sync"

	"github.com/busline/busline/middleware"
)

// timeFormat picks the form of the times of a message of kind k to target:
// the call's WithTimeFormat, else Options.TimeFormatByQueue, else (for a
// Reply, or a command from a handler to the queue the handled message came
// from) the form of the handled message's TimeSent, else Options.TimeFormat.
// Events go to whoever subscribed: only the call and Options.TimeFormat
// decide for them.
func (b *Bus) timeFormat(s *scope, k op, target string, cfg *sendConfig) (middleware.TimeFormat, error) {
	if cfg.timeFormatSet {
		if cfg.timeFormat > middleware.TimePikaBus1 {
			return 0, fmt.Errorf("%w: WithTimeFormat: unknown TimeFormat %d", ErrInvalidMessage, cfg.timeFormat)
		}
		return cfg.timeFormat, nil
	}
	if k == opPublish {
		return b.times, nil
	}
	if len(b.opts.TimeFormatByQueue) > 0 {
		if f, ok := b.opts.TimeFormatByQueue[target]; ok {
			return f, nil
		}
	}
	if hs := s.handlingScope(); hs != nil && (k == opReply || b.isSender(hs.in, target)) {
		if f, ok := middleware.TimeFormatOf(hs.in.Headers[b.names.TimeSent]); ok {
			return f, nil
		}
	}
	return b.times, nil
}

// isSender reports whether queue is where in came from: its ReplyToAddress
// header or reply_to property, or its OriginatingAddress header.
func (b *Bus) isSender(in *middleware.Message, queue string) bool {
	if in.ReplyTo == queue {
		return true
	}
	for _, name := range [...]string{b.names.ReplyToAddress, b.names.OriginatingAddress} {
		if v, ok := middleware.HeaderString(in.Headers[name]); ok && v == queue {
			return true
		}
	}
	return false
}

// pikaBus1Senders remembers the queues whose PikaBus 1.x-style messages
// the Bus has warned about, so that it warns once per sender; bounded, so
// that a stream of odd reply addresses cannot grow it.
type pikaBus1Senders struct {
	mu     sync.Mutex
	warned map[string]bool
}

const maxPikaBus1Warnings = 64

// noticeTimeForm warns, once per sending queue, that a message in PikaBus
// 1.x's time form reached an endpoint that writes the 2.x form to that
// queue: replies and sends back to it from its handlers follow its form,
// but anything else the endpoint sends there would make 1.x loop.
func (b *Bus) noticeTimeForm(ctx context.Context, m *middleware.Message) {
	v, ok := m.Headers[b.names.TimeSent].(string)
	if !ok || len(v) < 10 || v[2] != '/' {
		return // the cheap test first: not 1.x's MM/DD/YYYY
	}
	if f, ok := middleware.TimeFormatOf(v); !ok || f != middleware.TimePikaBus1 {
		return
	}
	from, _ := middleware.HeaderString(m.Headers[b.names.ReplyToAddress])
	if from == "" {
		from = m.ReplyTo
	}
	if from == "" {
		from, _ = middleware.HeaderString(m.Headers[b.names.OriginatingAddress])
	}
	if f, ok := b.opts.TimeFormatByQueue[from]; ok {
		if f == middleware.TimePikaBus1 {
			return
		}
	} else if b.times == middleware.TimePikaBus1 {
		return
	}
	w := &b.pikaBus1
	w.mu.Lock()
	if w.warned[from] || len(w.warned) >= maxPikaBus1Warnings {
		w.mu.Unlock()
		return
	}
	if w.warned == nil {
		w.warned = make(map[string]bool)
	}
	w.warned[from] = true
	w.mu.Unlock()
	b.log.WarnContext(ctx, "a message in PikaBus 1.x's time form arrived; replies to it are written in that form, "+
		"but other messages this endpoint sends to its sender are written in the PikaBus 2 form, which PikaBus 1.x cannot read "+
		"(it requeues them for ever): set Options.TimeFormatByQueue[sender] = middleware.TimePikaBus1",
		"queue", m.Queue, "sender", from, "message_id", m.ID, "time_sent", v)
}
