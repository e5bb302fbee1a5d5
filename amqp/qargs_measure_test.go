package amqp_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/transport"
)

// TestMeasureQueueArguments records, against a real RabbitMQ node, what the
// queue arguments of issue 13 item 7 do: which queue type accepts which
// argument, where a delivery limit, an overflow or a TTL sends a message,
// where a requeued message goes in a priority queue. It is a measurement,
// not a test (the memory broker's rules and the conformance suite come from
// it; docs/architecture.md records the figures). It prints and asserts
// nothing:
//
//	BUSLINE_MEASURE=1 go test -count=1 -run TestMeasureQueueArguments -v ./amqp
func TestMeasureQueueArguments(t *testing.T) {
	if os.Getenv("BUSLINE_MEASURE") == "" {
		t.Skip("a measurement: set BUSLINE_MEASURE=1")
	}
	url := brokertest.URL(t)
	conn, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch := func() *amqp091.Channel {
		c, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	n := 0
	fresh := func(prefix string) string {
		n++
		return fmt.Sprintf("measure-qargs-%s-%d-%d", prefix, time.Now().UnixNano()%1e6, n)
	}
	declare := func(name string, args amqp091.Table) error {
		c := ch()
		defer c.Close()
		_, err := c.QueueDeclare(name, true, false, false, false, args)
		return err
	}
	del := func(names ...string) {
		c := ch()
		defer c.Close()
		for _, q := range names {
			_, _ = c.QueueDelete(q, false, false, false)
		}
	}
	pub := func(c *amqp091.Channel, ex, key string, p amqp091.Publishing) string {
		p.DeliveryMode = 2
		dc, err := c.PublishWithDeferredConfirmWithContext(context.Background(), ex, key, false, false, p)
		if err != nil {
			return "error " + err.Error()
		}
		if dc.Wait() {
			return "ack"
		}
		return "nack"
	}
	drain := func(q string) []amqp091.Delivery {
		c := ch()
		defer c.Close()
		var out []amqp091.Delivery
		for {
			d, ok, err := c.Get(q, true)
			if err != nil || !ok {
				return out
			}
			out = append(out, d)
		}
	}
	show := func(ds []amqp091.Delivery) string {
		s := "["
		for i, d := range ds {
			if i > 0 {
				s += " "
			}
			s += string(d.Body)
			if d.Priority != 0 {
				s += fmt.Sprintf("(p%d)", d.Priority)
			}
			if x, ok := d.Headers["x-death"].([]any); ok {
				for _, e := range x {
					tb := e.(amqp091.Table)
					s += fmt.Sprintf("{reason=%v count=%v queue=%v}", tb["reason"], tb["count"], tb["queue"])
				}
				s += fmt.Sprintf("{first=%v}", d.Headers["x-first-death-reason"])
			}
		}
		return s + "]"
	}

	t.Run("acceptance", func(t *testing.T) {
		cases := []struct {
			name string
			args amqp091.Table
		}{
			{"x-max-priority=10", amqp091.Table{"x-max-priority": int64(10)}},
			{"x-max-priority=255", amqp091.Table{"x-max-priority": int64(255)}},
			{"x-max-priority=256", amqp091.Table{"x-max-priority": int64(256)}},
			{"x-max-priority=0", amqp091.Table{"x-max-priority": int64(0)}},
			{"x-max-priority=-1", amqp091.Table{"x-max-priority": int64(-1)}},
			{"x-max-priority=\"10\"", amqp091.Table{"x-max-priority": "10"}},
			{"x-delivery-limit=3", amqp091.Table{"x-delivery-limit": int64(3)}},
			{"x-delivery-limit=0", amqp091.Table{"x-delivery-limit": int64(0)}},
			{"x-delivery-limit=-1", amqp091.Table{"x-delivery-limit": int64(-1)}},
			{"x-overflow=drop-head", amqp091.Table{"x-overflow": "drop-head"}},
			{"x-overflow=reject-publish", amqp091.Table{"x-overflow": "reject-publish"}},
			{"x-overflow=reject-publish-dlx", amqp091.Table{"x-overflow": "reject-publish-dlx"}},
			{"x-overflow=bogus", amqp091.Table{"x-overflow": "bogus"}},
			{"x-max-length=2", amqp091.Table{"x-max-length": int64(2)}},
			{"x-max-length=0", amqp091.Table{"x-max-length": int64(0)}},
			{"x-max-length=-1", amqp091.Table{"x-max-length": int64(-1)}},
			{"x-max-length=\"2\"", amqp091.Table{"x-max-length": "2"}},
			{"x-max-length-bytes=100", amqp091.Table{"x-max-length-bytes": int64(100)}},
			{"x-max-length-bytes=-1", amqp091.Table{"x-max-length-bytes": int64(-1)}},
			{"x-message-ttl=1000", amqp091.Table{"x-message-ttl": int64(1000)}},
			{"x-message-ttl=0", amqp091.Table{"x-message-ttl": int64(0)}},
			{"x-message-ttl=-1", amqp091.Table{"x-message-ttl": int64(-1)}},
			{"x-message-ttl=\"1000\"", amqp091.Table{"x-message-ttl": "1000"}},
			{"x-dead-letter-exchange=\"\"", amqp091.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"}},
			{"x-dead-letter-exchange=missing", amqp091.Table{"x-dead-letter-exchange": "no-such-exchange"}},
			{"x-dead-letter-routing-key alone", amqp091.Table{"x-dead-letter-routing-key": "dlq"}},
			{"x-dead-letter-strategy=at-least-once", amqp091.Table{"x-dead-letter-strategy": "at-least-once"}},
		}
		for _, typ := range []string{"classic", "quorum"} {
			for _, c := range cases {
				args := amqp091.Table{"x-queue-type": typ}
				for k, v := range c.args {
					args[k] = v
				}
				q := fresh("acc")
				err := declare(q, args)
				res := "accepted"
				if err != nil {
					res = "refused: " + err.Error()
				}
				t.Logf("%s %s: %s", typ, c.name, res)
				del(q)
			}
			// Redeclare conflicts.
			q := fresh("redecl")
			_ = declare(q, amqp091.Table{"x-queue-type": typ, "x-max-length": int64(2)})
			err := declare(q, amqp091.Table{"x-queue-type": typ, "x-max-length": int64(3)})
			t.Logf("%s redeclare x-max-length 2 -> 3: %v", typ, err)
			err = declare(q, amqp091.Table{"x-queue-type": typ, "x-max-length": int32(2)})
			t.Logf("%s redeclare x-max-length int64 2 -> int32 2: %v", typ, err)
			err = declare(q, amqp091.Table{"x-queue-type": typ})
			t.Logf("%s redeclare x-max-length 2 -> absent: %v", typ, err)
			del(q)
		}
	})

	t.Run("delivery-limit", func(t *testing.T) {
		for _, dlx := range []bool{false, true} {
			q, dlq := fresh("dl"), fresh("dlq")
			args := amqp091.Table{"x-queue-type": "quorum", "x-delivery-limit": int64(2)}
			if dlx {
				args["x-dead-letter-exchange"] = ""
				args["x-dead-letter-routing-key"] = dlq
				_ = declare(dlq, amqp091.Table{"x-queue-type": "classic"})
			}
			if err := declare(q, args); err != nil {
				t.Fatal(err)
			}
			c := ch()
			_ = c.Confirm(false)
			t.Logf("publish: %s", pub(c, "", q, amqp091.Publishing{Body: []byte("m")}))
			// Nack with requeue until the message is gone.
			deliveries := 0
			for range 10 {
				d, ok, err := c.Get(q, false)
				if err != nil || !ok {
					break
				}
				deliveries++
				t.Logf("dlx=%v get %d: redelivered=%v x-delivery-count=%v", dlx, deliveries, d.Redelivered, d.Headers["x-delivery-count"])
				_ = d.Nack(false, true)
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)
			t.Logf("dlx=%v limit 2, nack-requeue: %d deliveries; dead-letter queue: %s", dlx, deliveries, show(drain(dlq)))
			// Returned by a closed channel: does it count?
			t.Logf("publish: %s", pub(c, "", q, amqp091.Publishing{Body: []byte("r")}))
			c.Close()
			deliveries = 0
			for range 10 {
				c2 := ch()
				d, ok, err := c2.Get(q, false)
				if err != nil || !ok {
					c2.Close()
					break
				}
				deliveries++
				t.Logf("dlx=%v channel-close get %d: x-delivery-count=%v", dlx, deliveries, d.Headers["x-delivery-count"])
				c2.Close()
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)
			t.Logf("dlx=%v limit 2, channel closed with the message unacked: %d deliveries; dead-letter queue: %s", dlx, deliveries, show(drain(dlq)))
			// Nack without requeue with a DLX: reason rejected.
			c = ch()
			_ = c.Confirm(false)
			pub(c, "", q, amqp091.Publishing{Body: []byte("x")})
			if d, ok, _ := c.Get(q, false); ok {
				_ = d.Nack(false, false)
			}
			time.Sleep(300 * time.Millisecond)
			t.Logf("dlx=%v nack without requeue: dead-letter queue: %s, queue: %s", dlx, show(drain(dlq)), show(drain(q)))
			c.Close()
			del(q, dlq)
		}
	})

	t.Run("priority", func(t *testing.T) {
		q := fresh("prio")
		if err := declare(q, amqp091.Table{"x-queue-type": "classic", "x-max-priority": int64(5)}); err != nil {
			t.Fatal(err)
		}
		c := ch()
		_ = c.Confirm(false)
		for _, m := range []struct {
			body string
			p    uint8
		}{{"a1", 1}, {"b1", 1}, {"c5", 5}, {"d0", 0}, {"e9", 9}, {"f5", 5}} {
			pub(c, "", q, amqp091.Publishing{Body: []byte(m.body), Priority: m.p})
		}
		t.Logf("priority queue max 5, published a1 b1 c5 d0 e9 f5: order %s", show(drain(q)))
		for _, m := range []struct {
			body string
			p    uint8
		}{{"a1", 1}, {"b1", 1}, {"c5", 5}, {"d5", 5}} {
			pub(c, "", q, amqp091.Publishing{Body: []byte(m.body), Priority: m.p})
		}
		// Take c5 and a? Get gives c5 then d5; nack c5 with requeue.
		d1, _, _ := c.Get(q, false)
		d2, _, _ := c.Get(q, false)
		d3, _, _ := c.Get(q, false)
		t.Logf("got %s %s %s", d1.Body, d2.Body, d3.Body)
		pub(c, "", q, amqp091.Publishing{Body: []byte("g5"), Priority: 5})
		pub(c, "", q, amqp091.Publishing{Body: []byte("h1"), Priority: 1})
		_ = d3.Nack(false, true)
		_ = d1.Nack(false, true)
		_ = d2.Nack(false, true)
		time.Sleep(100 * time.Millisecond)
		t.Logf("after nacking %s, %s, %s with requeue (g5, h1 published meanwhile): order %s", d3.Body, d1.Body, d2.Body, show(drain(q)))
		c.Close()
		del(q)
	})

	t.Run("overflow", func(t *testing.T) {
		for _, typ := range []string{"classic", "quorum"} {
			for _, ov := range []string{"drop-head", "reject-publish", "reject-publish-dlx"} {
				q, dlq := fresh("ov"), fresh("ovdlq")
				_ = declare(dlq, amqp091.Table{"x-queue-type": "classic"})
				err := declare(q, amqp091.Table{"x-queue-type": typ, "x-max-length": int64(2), "x-overflow": ov,
					"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
				if err != nil {
					t.Logf("%s %s: %v", typ, ov, err)
					del(dlq)
					continue
				}
				c := ch()
				_ = c.Confirm(false)
				var res []string
				for _, b := range []string{"m1", "m2", "m3"} {
					res = append(res, pub(c, "", q, amqp091.Publishing{Body: []byte(b)}))
				}
				// With one delivered and unacked, does the queue have room?
				d, _, _ := c.Get(q, false)
				r4 := pub(c, "", q, amqp091.Publishing{Body: []byte("m4")})
				r5 := pub(c, "", q, amqp091.Publishing{Body: []byte("m5")})
				_ = d.Nack(false, true)
				time.Sleep(300 * time.Millisecond)
				t.Logf("%s max-length 2 %s: publish m1..m3 %v; after get %s unacked: m4 %s m5 %s; after nack requeue of it: queue %s, dlq %s",
					typ, ov, res, d.Body, r4, r5, show(drain(q)), show(drain(dlq)))
				c.Close()
				del(q, dlq)
			}
			// Bytes.
			q := fresh("bytes")
			_ = declare(q, amqp091.Table{"x-queue-type": typ, "x-max-length-bytes": int64(10), "x-overflow": "reject-publish"})
			c := ch()
			_ = c.Confirm(false)
			var res []string
			for _, b := range []string{"aaaa", "bbbb", "cccc", "d"} {
				res = append(res, pub(c, "", q, amqp091.Publishing{Body: []byte(b), Headers: amqp091.Table{"big-header": "0123456789012345678901234567890123456789"}}))
			}
			t.Logf("%s max-length-bytes 10 reject-publish, 4-byte bodies with a 40-byte header, then a 1-byte one: %v queue %s", typ, res, show(drain(q)))
			c.Close()
			del(q)
			// Zero length.
			q = fresh("zero")
			_ = declare(q, amqp091.Table{"x-queue-type": typ, "x-max-length": int64(0), "x-overflow": "reject-publish"})
			c = ch()
			_ = c.Confirm(false)
			t.Logf("%s max-length 0 reject-publish: publish %s", typ, pub(c, "", q, amqp091.Publishing{Body: []byte("z")}))
			c.Close()
			del(q)
		}
		// Fan out to a full queue and one with room.
		ex := fresh("fan")
		c := ch()
		_ = c.ExchangeDeclare(ex, "fanout", false, true, false, false, nil)
		full, room := fresh("full"), fresh("room")
		_ = declare(full, amqp091.Table{"x-queue-type": "classic", "x-max-length": int64(0), "x-overflow": "reject-publish"})
		_ = declare(room, amqp091.Table{"x-queue-type": "classic"})
		_ = c.QueueBind(full, "", ex, false, nil)
		_ = c.QueueBind(room, "", ex, false, nil)
		_ = c.Confirm(false)
		r := pub(c, ex, "", amqp091.Publishing{Body: []byte("f")})
		// Mandatory to a full queue: return or nack?
		dc, _ := c.PublishWithDeferredConfirmWithContext(context.Background(), "", full, true, false, amqp091.Publishing{Body: []byte("g")})
		ret := make(chan amqp091.Return, 1)
		c.NotifyReturn(ret)
		ok := dc.Wait()
		var returned bool
		select {
		case <-ret:
			returned = true
		case <-time.After(200 * time.Millisecond):
		}
		t.Logf("fanout to a full reject-publish queue and a queue with room: %s; the other queue: %s; mandatory to the full queue: ack=%v returned=%v", r, show(drain(room)), ok, returned)
		c.Close()
		del(full, room)
	})

	t.Run("ttl", func(t *testing.T) {
		for _, typ := range []string{"classic", "quorum"} {
			q, dlq := fresh("ttl"), fresh("ttldlq")
			_ = declare(dlq, amqp091.Table{"x-queue-type": "classic"})
			_ = declare(q, amqp091.Table{"x-queue-type": typ, "x-message-ttl": int64(300),
				"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
			c := ch()
			_ = c.Confirm(false)
			pub(c, "", q, amqp091.Publishing{Body: []byte("t1")})
			pub(c, "", q, amqp091.Publishing{Body: []byte("t2"), Expiration: "60000"})
			pub(c, "", q, amqp091.Publishing{Body: []byte("t3"), Expiration: "100"})
			time.Sleep(800 * time.Millisecond)
			t.Logf("%s x-message-ttl 300, t2 expiration 60000, t3 expiration 100, after 800 ms, no consumer: queue %s, dlq %s", typ, show(drain(q)), show(drain(dlq)))

			// Per-message expiry behind a longer-lived head.
			q2 := fresh("ttlmsg")
			_ = declare(q2, amqp091.Table{"x-queue-type": typ, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
			pub(c, "", q2, amqp091.Publishing{Body: []byte("long"), Expiration: "2000"})
			pub(c, "", q2, amqp091.Publishing{Body: []byte("short"), Expiration: "100"})
			time.Sleep(600 * time.Millisecond)
			d, ok, _ := c.Get(q2, false)
			var stats string
			if qi, err := c.QueueDeclarePassive(q2, true, false, false, false, amqp091.Table{"x-queue-type": typ, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}); err == nil {
				stats = fmt.Sprint(qi.Messages)
			} else {
				c = ch()
				_ = c.Confirm(false)
				stats = err.Error()
			}
			t.Logf("%s no queue TTL, long (2000) then short (100), after 600 ms: get=%v %s, ready now %s, dlq %s", typ, ok, d.Body, stats, show(drain(dlq)))
			if ok {
				_ = d.Ack(false)
			}
			time.Sleep(100 * time.Millisecond)
			t.Logf("%s after acking the head: queue %s dlq %s", typ, show(drain(q2)), show(drain(dlq)))

			// Requeue after the TTL passed while unacked.
			pub(c, "", q, amqp091.Publishing{Body: []byte("held")})
			d, ok, _ = c.Get(q, false)
			time.Sleep(600 * time.Millisecond)
			if ok {
				_ = d.Nack(false, true)
			}
			time.Sleep(300 * time.Millisecond)
			t.Logf("%s x-message-ttl 300, held unacked 600 ms then nacked with requeue: queue %s dlq %s", typ, show(drain(q)), show(drain(dlq)))

			// TTL 0.
			q3 := fresh("ttl0")
			_ = declare(q3, amqp091.Table{"x-queue-type": typ, "x-message-ttl": int64(0), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
			pub(c, "", q3, amqp091.Publishing{Body: []byte("zero")})
			time.Sleep(300 * time.Millisecond)
			t.Logf("%s x-message-ttl 0, no consumer: queue %s dlq %s", typ, show(drain(q3)), show(drain(dlq)))
			c.Close()
			del(q, q2, q3, dlq)
		}
	})

	t.Run("details", func(t *testing.T) {
		for _, typ := range []string{"classic", "quorum"} {
			q, dlq := fresh("det"), fresh("detdlq")
			_ = declare(dlq, amqp091.Table{"x-queue-type": "classic"})
			_ = declare(q, amqp091.Table{"x-queue-type": typ, "x-message-ttl": int64(100),
				"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
			c := ch()
			_ = c.Confirm(false)
			pub(c, "", q, amqp091.Publishing{Body: []byte("d"), Expiration: "50000"})
			time.Sleep(400 * time.Millisecond)
			for _, d := range drain(dlq) {
				t.Logf("%s dead-lettered: exchange %q key %q expiration %q headers %#v", typ, d.Exchange, d.RoutingKey, d.Expiration, d.Headers)
			}
			c.Close()
			del(q, dlq)
		}
		// Quorum reject-publish: when does it accept again?
		q := fresh("soft")
		_ = declare(q, amqp091.Table{"x-queue-type": "quorum", "x-max-length": int64(10), "x-overflow": "reject-publish"})
		c := ch()
		_ = c.Confirm(false)
		var res []string
		for i := range 13 {
			res = append(res, pub(c, "", q, amqp091.Publishing{Body: []byte(fmt.Sprint(i))}))
		}
		t.Logf("quorum max-length 10 reject-publish, 13 publishes: %v", res)
		for range 6 {
			d, _, _ := c.Get(q, true)
			r := pub(c, "", q, amqp091.Publishing{Body: []byte("again")})
			c2 := ch()
			qi, _ := c2.QueueDeclarePassive(q, true, false, false, false, amqp091.Table{"x-queue-type": "quorum", "x-max-length": int64(10), "x-overflow": "reject-publish"})
			c2.Close()
			t.Logf("took %s, publish: %s, ready now %d", d.Body, r, qi.Messages)
			// Put back what was accepted, so that the count goes down by one per step.
			if r == "ack" {
				_, _, _ = c.Get(q, true)
			}
		}
		c.Close()
		del(q)
		// Classic: a requeue over the limit with reject-publish keeps the
		// messages; a drop-head queue drops. x-delivery-limit 0.
		q = fresh("dl0")
		_ = declare(q, amqp091.Table{"x-queue-type": "quorum", "x-delivery-limit": int64(0)})
		c = ch()
		_ = c.Confirm(false)
		pub(c, "", q, amqp091.Publishing{Body: []byte("z")})
		n := 0
		for range 5 {
			d, ok, _ := c.Get(q, false)
			if !ok {
				break
			}
			n++
			_ = d.Nack(false, true)
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("quorum x-delivery-limit 0: %d deliveries", n)
		c.Close()
		del(q)
	})

	t.Run("unacked", func(t *testing.T) {
		for _, typ := range []string{"classic", "quorum"} {
			for _, ov := range []string{"drop-head", "reject-publish"} {
				q := fresh("un")
				_ = declare(q, amqp091.Table{"x-queue-type": typ, "x-max-length": int64(2), "x-overflow": ov})
				c := ch()
				_ = c.Confirm(false)
				pub(c, "", q, amqp091.Publishing{Body: []byte("m1")})
				pub(c, "", q, amqp091.Publishing{Body: []byte("m2")})
				d1, _, _ := c.Get(q, false)
				d2, _, _ := c.Get(q, false)
				var res []string
				for _, b := range []string{"m3", "m4", "m5"} {
					res = append(res, pub(c, "", q, amqp091.Publishing{Body: []byte(b)}))
				}
				_ = d1.Nack(false, true)
				_ = d2.Nack(false, true)
				time.Sleep(200 * time.Millisecond)
				t.Logf("%s %s max 2: m1 m2 delivered unacked, then m3 m4 m5: %v; after nacking m1, m2 with requeue: queue %s", typ, ov, res, show(drain(q)))
				c.Close()
				del(q)
			}
		}
	})

	t.Run("deferred-into-full", func(t *testing.T) {
		// busline's delay levels dead-letter at least once: what happens to a
		// deferred message whose queue is full (reject-publish) when it
		// comes due?
		tr := dial(t, amqp.Options{})
		q := fresh("deffull")
		ctx := context.Background()
		if err := tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q, Type: transport.Classic,
			Options: transport.QueueOptions{MaxLength: 1, Overflow: transport.RejectPublish}}}); err != nil {
			t.Fatal(err)
		}
		defer del(q)
		if err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: q, Message: transport.Message{ID: "filler"}}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := tr.Dispatch(ctx, transport.Outgoing{RoutingKey: q, NotBefore: time.Now().Add(time.Second), Message: transport.Message{ID: "deferred"}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(4 * time.Second)
		t.Logf("4 s after a deferral of 1 s into a full queue: queue %s", show(drain(q)))
		for time.Since(start) < 5*time.Minute {
			if got := drain(q); len(got) > 0 {
				t.Logf("the deferred message arrived %v after it was sent, once the queue had room: %s", time.Since(start).Round(time.Second), show(got))
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("the deferred message did not arrive within 5 minutes")
	})
}
