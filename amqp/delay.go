package amqp

import (
	"fmt"
	"maps"
	"math/bits"
	"strconv"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// delays names and builds the delay levels (see "Deferred delivery" in the
// package documentation).
type delays struct {
	levels      int
	prefix      string
	delivery    string     // the exchange level 0 dead-letters to
	undelivered string     // its alternate exchange, and the queue behind it
	names       []string   // level l's name, made once: Dispatch uses them per message
	hopKeys     [][]string // hopKeys[from][to+1]: hop(from, to), likewise
}

// undeliveredTTL is how long a deferred message whose destination queue no
// longer exists stays in the undelivered queue, for an operator to see.
const undeliveredTTL = 7 * 24 * time.Hour

func newDelays(o Options) delays {
	d := delays{levels: o.DelayLevels, prefix: o.DelayPrefix,
		delivery: o.DelayPrefix + "-delivery", undelivered: o.DelayPrefix + "-undelivered"}
	d.names = make([]string, d.levels)
	d.hopKeys = make([][]string, d.levels)
	for l := range d.levels {
		d.names[l] = fmt.Sprintf("%s-%02d", d.prefix, l)
		d.hopKeys[l] = make([]string, d.levels+1)
		d.hopKeys[l][0] = fmt.Sprintf("%s-%02d>delivery", d.prefix, l)
		for to := range d.levels {
			d.hopKeys[l][to+1] = fmt.Sprintf("%s-%02d>%02d", d.prefix, l, to)
		}
	}
	return d
}

// level returns the name of level l's exchange and queue.
func (d delays) level(l int) string {
	if l < len(d.names) {
		return d.names[l]
	}
	return fmt.Sprintf("%s-%02d", d.prefix, l)
}

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

// entry returns the level a message delayed by s > 0 seconds enters at the
// levels' original way (see key): the level of its highest set bit.
func (d delays) entry(s uint64) string { return d.level(d.top(s)) }

// top returns the highest set bit of s > 0 among the levels.
func (d delays) top(s uint64) int {
	for i := d.levels - 1; i > 0; i-- {
		if s&(1<<i) != 0 {
			return i
		}
	}
	return 0
}

// expiration returns the per-message TTL (the expiration property, in
// milliseconds) of a message delayed by delay that enters at level entry,
// s being the seconds its levels add up to (delay rounded up to whole
// seconds, or to even ones: see route): its entry level's TTL less the
// rounding, so that the message arrives when it is due rather than up to
// two seconds later, and "" when there is no rounding to take back. The
// message still never arrives early: it waits that long in its entry
// level (TTLs count from its enqueueing, after now) and 2^l seconds in
// each other level l, s seconds less the rounding, whole milliseconds
// taken back only.
// RabbitMQ removes the property when it dead-letters the message, so it
// shortens the entry level only. A message expires at the head of its
// queue only, so one queued behind a message that entered its level
// shortly before it, with less taken back or none, may wait for that one:
// by less than its own rounding (under two seconds), and never longer
// than the level's TTL, as without the property.
func (d delays) expiration(entry int, s uint64, delay time.Duration) string {
	back := (time.Duration(s)*time.Second - delay).Milliseconds()
	if back <= 0 {
		return ""
	}
	return strconv.FormatInt(int64(1000)<<entry-back, 10)
}

// bccHeader is RabbitMQ's sender-selected distribution header: its routing
// keys are added to the message's own, and the broker removes the header
// before it enqueues the message, so no consumer sees it. The routing keys
// a message was published with, BCC's included, are also the ones
// dead-lettering routes it with, at every level.
const bccHeader = "BCC"

// sendersSelect reports whether h holds a sender-selected distribution
// header, CC or BCC, of its own.
func sendersSelect(h amqp091.Table) bool {
	_, cc := h["CC"]
	_, bcc := h[bccHeader]
	return cc || bcc
}

// hopRoute is how a message routed by hop keys travels through the levels
// (see route).
type hopRoute struct {
	key   string // its routing key: its destination's delivery key
	bcc   []any  // its BCC header's keys: its entry level's queue, then its hops
	entry int    // the level it enters at, whose TTL its per-message TTL shortens
	s     uint64 // the seconds its levels add up to: the delay rounded up to even seconds when it can be
}

// route returns how a message delayed by s > 0 seconds to dest travels
// through the levels, rot choosing the order of its levels (see path); ok
// is false when the keys would not fit in 255 bytes, and the message then
// goes the levels' original way (see entry and key).
//
// The BCC names the queue of the entry level, which the default exchange
// routes to by a lookup of its name, and a hop key (see hop) for every
// level the message waits in but the last, which dead-letters it to the
// delivery exchange without one. The routing key is dest's delivery key
// (see deliveryKey). Each key is one word, unless the prefix has dots, so
// each exchange on the way matches a few short keys.
//
// Level 0, which can only come last (see path), would add a hop at the due
// time for every odd delay; so an odd delay is rounded up to the even one
// above it, and the entry level takes back the extra second with the
// rounding (see expiration). Only the longest odd delay, 2^levels-1
// seconds, still waits in level 0.
//
// The original way, the delay key (key), makes every exchange a message
// passes, a level's and the delivery exchange's, match a 29-word key
// against its patterns, and a level whose bit is 0 sends it through one
// more exchange: measured on RabbitMQ 3.10, publishing to the entry
// level's exchange so costs the broker three to four times a Send, and a
// level moves messages on five to seven times slower than a dead-letter
// hop through the default exchange (see the README's "Benchmarks").
func (d delays) route(s, rot uint64, dest string) (r hopRoute, ok bool) {
	r.key = d.deliveryKey(dest)
	if len(r.key) > 255 {
		return hopRoute{}, false
	}
	r.s = d.even(s)
	r.entry = -1
	d.path(r.s, rot, func(l int) {
		if r.entry < 0 {
			r.entry = l
		}
	})
	r.bcc = append(make([]any, 0, 4), d.level(r.entry))
	d.hops(r.s, rot, func(key, _ string, _ int) { r.bcc = append(r.bcc, key) })
	return r, true
}

// even rounds an odd number of seconds s up to the even one above it,
// unless that is longer than the levels allow.
func (d delays) even(s uint64) uint64 {
	if s&1 != 0 && s+1 < uint64(1)<<d.levels {
		return s + 1
	}
	return s
}

// path calls f with the levels a message routed by hops for s seconds
// waits in, in order: those of its set bits above level 0 in ascending
// order, rotated left by rot mod their number, then level 0 when bit 0 is
// set. Level 0 comes last because it dead-letters to the delivery
// exchange, where the message's delivery key routes it to its
// destination: it cannot hop from there to another level.
//
// Why the rotation: messages that fall due together leave their last
// level together, and enter it together, its TTL before: two crowds of
// dead-letter hops out of one queue, which its dead-letter worker moves
// alone, while the message's other levels were entered and left at times
// spread by the sending. Dispatch gives each deferred message the next
// rotation, so that those crowds are split over as many queues, and
// moments, as the delay has set bits. Taken highest first, the short
// levels of every message came last and crowded the seconds before the
// due time; lowest first, all of them entered their longest level at one
// moment (see the README's "Deferral lateness").
func (d delays) path(s, rot uint64, f func(l int)) {
	high := s &^ 1
	if n := uint64(bits.OnesCount64(high)); n > 1 {
		// Skip the rot mod n lowest set bits, then wrap around to them.
		k := rot % n
		rest := high
		for range k {
			rest &= rest - 1
		}
		for r := rest; r != 0; r &= r - 1 {
			f(bits.TrailingZeros64(r))
		}
		for r := high &^ rest; r != 0; r &= r - 1 {
			f(bits.TrailingZeros64(r))
		}
	} else if high != 0 {
		f(bits.TrailingZeros64(high))
	}
	if s&1 != 0 {
		f(0)
	}
}

// hop is the routing key that takes a message leaving level from's queue,
// dead-lettered to level from-1's exchange, into level to's queue, or to
// the delivery exchange when to < 0. Level from-1's exchange binds it, and
// no other exchange: Dispatch binds the hops of a message before it
// publishes it, once per transport and connection (see routes.ensureHops),
// not all of them (about 750) when it declares the levels: a broker under
// load took longer than a heartbeat to make them for several transports
// dialing at once.
func (d delays) hop(from, to int) string {
	if from < len(d.hopKeys) && to+1 < len(d.hopKeys[from]) {
		return d.hopKeys[from][to+1]
	}
	if to < 0 {
		return fmt.Sprintf("%s-%02d>delivery", d.prefix, from)
	}
	return fmt.Sprintf("%s-%02d>%02d", d.prefix, from, to)
}

// deliveryKey is the routing key of a message routed by hops to dest, and
// dest's binding on the delivery exchange for such messages: the prefix, a
// ">" and dest with its dots and percent signs escaped, one word, so that
// no level's pattern matches it and the delivery exchange matches it
// word for word.
func (d delays) deliveryKey(dest string) string {
	var b strings.Builder
	b.Grow(len(d.prefix) + 1 + len(dest) + 8)
	b.WriteString(d.prefix)
	b.WriteByte('>')
	for i := 0; i < len(dest); i++ {
		switch c := dest[i]; c {
		case '.':
			b.WriteString("%2E")
		case '%':
			b.WriteString("%25")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// fromDeliveryKey returns the destination of a delivery key, or ok false
// when key is not one.
func (d delays) fromDeliveryKey(key string) (dest string, ok bool) {
	rest, ok := strings.CutPrefix(key, d.prefix+">")
	if !ok {
		return "", false
	}
	if !strings.Contains(rest, "%") {
		return rest, true
	}
	var b strings.Builder
	for i := 0; i < len(rest); i++ {
		if rest[i] == '%' && i+2 < len(rest) {
			switch rest[i+1 : i+3] {
			case "2E":
				b.WriteByte('.')
				i += 2
				continue
			case "25":
				b.WriteByte('%')
				i += 2
				continue
			}
		}
		b.WriteByte(rest[i])
	}
	return b.String(), true
}

// withBCC returns h (not modified: it may be the caller's) with a BCC
// header of keys.
func withBCC(h amqp091.Table, keys []any) amqp091.Table {
	out := maps.Clone(h) // copies the map whole, about twice as fast as entry by entry
	if out == nil {
		out = make(amqp091.Table, 1)
	}
	out[bccHeader] = keys
	return out
}

// bindingKey binds a destination queue on the delivery exchange. It has
// exactly one word per level before the queue's name, so that a queue named
// "b" never receives a message for a queue named "a.b".
func (d delays) bindingKey(dest string) string {
	return strings.Repeat("*.", d.levels) + dest
}

// bind binds dest on the delivery exchange under both its keys: the delay
// keys' pattern (bindingKey) and its delivery key, when they fit.
func (d delays) bind(ch amqpChannel, dest string) error {
	if !d.fits(dest) {
		return nil
	}
	if err := ch.QueueBind(dest, d.bindingKey(dest), d.delivery, false, nil); err != nil {
		return err
	}
	if k := d.deliveryKey(dest); len(k) <= 255 {
		return ch.QueueBind(dest, k, d.delivery, false, nil)
	}
	return nil
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

// destination extracts the destination from a routing key built by key or
// by deliveryKey.
func (d delays) destination(key string) string {
	if dest, ok := d.fromDeliveryKey(key); ok {
		return dest
	}
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

// hops calls f with each hop key a message routed by route for s seconds
// and rot needs bound (see route and path), and where: the exchange that
// binds it, and the queue it leads to (to >= 0: level to's) or the
// delivery exchange (to < 0).
func (d delays) hops(s, rot uint64, f func(key, exchange string, to int)) {
	from := -1
	d.path(s, rot, func(l int) {
		if from >= 0 {
			f(d.hop(from, l), d.level(from-1), l)
		}
		from = l
	})
	if from > 0 {
		f(d.hop(from, -1), d.level(from-1), -1)
	}
}

// bindHop binds a hop key on exchange, to level to's queue or (to < 0) to
// the delivery exchange.
func (d delays) bindHop(ch amqpChannel, key, exchange string, to int) error {
	if to < 0 {
		if err := ch.ExchangeBind(d.delivery, key, exchange, false, nil); err != nil {
			return fmt.Errorf("amqp: bind exchange %q to %q under %q: %w", d.delivery, exchange, key, err)
		}
		return nil
	}
	if err := ch.QueueBind(d.level(to), key, exchange, false, nil); err != nil {
		return fmt.Errorf("amqp: bind queue %q to exchange %q under %q: %w", d.level(to), exchange, key, err)
	}
	return nil
}

// deathHeaders are the headers RabbitMQ adds when it dead-letters a message
// from one delay level to the next; handlers never see them.
func deathHeader(k string) bool {
	return k == "x-death" || strings.HasPrefix(k, "x-first-death-") || strings.HasPrefix(k, "x-last-death-")
}
