package amqp

import (
	"fmt"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// delays names and builds the delay levels (see "Deferred delivery" in the
// package documentation).
type delays struct {
	levels      int
	prefix      string
	delivery    string // the exchange level 0 dead-letters to
	undelivered string // its alternate exchange, and the queue behind it
}

// undeliveredTTL is how long a deferred message whose destination queue no
// longer exists stays in the undelivered queue, for an operator to see.
const undeliveredTTL = 7 * 24 * time.Hour

func newDelays(o Options) delays {
	return delays{levels: o.DelayLevels, prefix: o.DelayPrefix,
		delivery: o.DelayPrefix + "-delivery", undelivered: o.DelayPrefix + "-undelivered"}
}

// level returns the name of level l's exchange and queue.
func (d delays) level(l int) string { return fmt.Sprintf("%s-%02d", d.prefix, l) }

// max is the longest delay, 2^levels-1 seconds.
func (d delays) max() time.Duration {
	return time.Duration(uint64(1)<<d.levels-1) * time.Second
}

// seconds rounds a delay up to whole seconds: a message is never early.
func seconds(delay time.Duration) uint64 {
	s := uint64(delay / time.Second)
	if delay%time.Second != 0 {
		s++
	}
	return s
}

// key returns the routing key of a message delayed by s seconds to dest:
// the levels' bits, most significant first, then dest.
func (d delays) key(s uint64, dest string) string {
	var b strings.Builder
	b.Grow(2*d.levels + len(dest))
	for l := d.levels - 1; l >= 0; l-- {
		if s&(1<<l) != 0 {
			b.WriteString("1.")
		} else {
			b.WriteString("0.")
		}
	}
	b.WriteString(dest)
	return b.String()
}

// entry returns the level a message delayed by s > 0 seconds enters at:
// the level of its highest set bit.
func (d delays) entry(s uint64) string {
	l := 0
	for i := d.levels - 1; i >= 0; i-- {
		if s&(1<<i) != 0 {
			l = i
			break
		}
	}
	return d.level(l)
}

// bccHeader is RabbitMQ's sender-selected distribution header: its routing
// keys are added to the message's own, and the broker removes the header
// before it enqueues the message, so no consumer sees it.
const bccHeader = "BCC"

// sendersSelect reports whether h holds a sender-selected distribution
// header, CC or BCC, of its own.
func sendersSelect(h amqp091.Table) bool {
	_, cc := h["CC"]
	_, bcc := h[bccHeader]
	return cc || bcc
}

// enter returns the headers of a message delayed by s > 0 seconds, which is
// published to the default exchange with its delay key (key) as routing
// key: h (not modified) and a BCC naming the queue of its entry level. The
// default exchange routes the BCC key to that queue by a lookup of its
// name, and the delay key to no queue (none is named so). Publishing to the
// entry level's topic exchange instead, as the levels' own dead-lettering
// does, costs the broker the match of a 29-word key against the level's
// patterns, which made a Defer three to four times as expensive as a Send
// for it (see the README's "RabbitMQ" benchmarks). The routing keys a
// message was published with, BCC's included, are the ones dead-lettering
// routes it with: the entry level's name matches no pattern of the levels
// below (they need more words), so the delay key alone takes it on.
//
// A message that carries CC or BCC headers of its own (a retry copy of a
// foreign producer's message, say) enters through the level's exchange as
// before: through the default exchange its keys would name queues, which
// would receive it at once.
func (d delays) enter(h amqp091.Table, s uint64) amqp091.Table {
	out := make(amqp091.Table, len(h)+1)
	for k, v := range h {
		out[k] = v
	}
	out[bccHeader] = []any{d.entry(s)}
	return out
}

// bindingKey binds a destination queue on the delivery exchange. It has
// exactly one word per level before the queue's name, so that a queue named
// "b" never receives a message for a queue named "a.b".
func (d delays) bindingKey(dest string) string {
	return strings.Repeat("*.", d.levels) + dest
}

// owns reports whether exchange is one of the delay exchanges. A message
// leaving the delay levels is delivered as dead-lettered to the exchange
// below the last level it waited in, possibly the delivery exchange.
func (d delays) owns(exchange string) bool {
	return strings.HasPrefix(exchange, d.prefix+"-")
}

// fits reports whether a queue name is short enough to be delayed to: the
// routing key must stay within 255 bytes.
func (d delays) fits(dest string) bool { return len(dest) <= d.maxDest() }

// maxDest is the longest destination queue name a deferred message can have.
func (d delays) maxDest() int { return 255 - 2*d.levels }

// destination extracts the destination from a routing key built by key.
func (d delays) destination(key string) string {
	rest := key
	for range d.levels {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			return key
		}
		rest = rest[i+1:]
	}
	return rest
}

// declare creates the delivery exchange and the levels: level l's topic
// exchange routes a message whose bit l is set to level l's queue, and any
// other message on to level l-1's exchange (level 0: the delivery exchange);
// level l's quorum queue holds messages 2^l seconds, then dead-letters them,
// at least once, to level l-1's exchange.
//
// A message whose destination queue was deleted while it waited would stay
// in level 0's queue for ever: at-least-once dead-lettering keeps a message
// it cannot route and retries. So the delivery exchange has an alternate
// exchange that routes such messages to the undelivered queue, which keeps
// them for undeliveredTTL.
func (d delays) declare(ch amqpChannel) error {
	if err := ch.ExchangeDeclare(d.undelivered, amqp091.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %q: %w", d.undelivered, err)
	}
	args := amqp091.Table{"x-queue-type": "quorum", "x-message-ttl": undeliveredTTL.Milliseconds()}
	if _, err := ch.QueueDeclare(d.undelivered, true, false, false, false, args); err != nil {
		return fmt.Errorf("declare queue %q: %w", d.undelivered, err)
	}
	if err := ch.QueueBind(d.undelivered, "", d.undelivered, false, nil); err != nil {
		return fmt.Errorf("bind queue %q: %w", d.undelivered, err)
	}
	ae := amqp091.Table{"alternate-exchange": d.undelivered}
	if err := ch.ExchangeDeclare(d.delivery, amqp091.ExchangeTopic, true, false, false, false, ae); err != nil {
		return fmt.Errorf("declare exchange %q: %w", d.delivery, err)
	}
	for l := 0; l < d.levels; l++ {
		name := d.level(l)
		next := d.delivery
		if l > 0 {
			next = d.level(l - 1)
		}
		if err := ch.ExchangeDeclare(name, amqp091.ExchangeTopic, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare exchange %q: %w", name, err)
		}
		args := amqp091.Table{
			"x-queue-type":           "quorum",
			"x-message-ttl":          int64(1000) << l,
			"x-dead-letter-exchange": next,
			"x-dead-letter-strategy": "at-least-once",
			"x-overflow":             "reject-publish",
		}
		if _, err := ch.QueueDeclare(name, true, false, false, false, args); err != nil {
			return fmt.Errorf("declare queue %q: %w", name, err)
		}
		prefix := strings.Repeat("*.", d.levels-1-l)
		if err := ch.QueueBind(name, prefix+"1.#", name, false, nil); err != nil {
			return fmt.Errorf("bind queue %q: %w", name, err)
		}
		if err := ch.ExchangeBind(next, prefix+"0.#", name, false, nil); err != nil {
			return fmt.Errorf("bind exchange %q to %q: %w", name, next, err)
		}
	}
	return nil
}

// deathHeaders are the headers RabbitMQ adds when it dead-letters a message
// from one delay level to the next; handlers never see them.
func deathHeader(k string) bool {
	return k == "x-death" || strings.HasPrefix(k, "x-first-death-") || strings.HasPrefix(k, "x-last-death-")
}
