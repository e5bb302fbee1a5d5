package memory_test

import (
	"fmt"
	"maps"
	"testing"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// The broker recycles its own copies of messages once nothing refers to
// them; these tests check that nothing that still refers to one sees it
// change.

// TestRecycledCopiesKeepJournal acks messages (freeing the queue's copy)
// and sends more (which reuse the freed copies), then checks that the
// journal still shows every message as it was sent.
func TestRecycledCopiesKeepJournal(t *testing.T) {
	tr := newTransport(t, memory.Options{})
	declare(t, tr, "q")
	const n = 50
	for round := range 3 {
		for i := range n {
			id := fmt.Sprintf("m%d-%d", round, i)
			err := tr.Dispatch(ctxT(t), transport.Outgoing{RoutingKey: "q", Message: transport.Message{
				ID: id, Body: []byte("body of " + id),
				Headers: transport.Headers{"id": id, "n": i, "bytes": []byte(id), "table": map[string]any{"id": id}},
			}})
			if err != nil {
				t.Fatal(err)
			}
		}
		for range n {
			d, ok, err := tr.Get(ctxT(t), "q")
			if err != nil || !ok {
				t.Fatalf("get: %v %v", ok, err)
			}
			checkMessage(t, "delivered", d.Message)
			d.Body[0] = 'X' // the handler's copy is its own
			d.Headers["id"] = "changed"
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
		}
	}
	recs := tr.Broker().Journal()
	if len(recs) != 3*n*3 {
		t.Fatalf("%d records, want %d", len(recs), 3*n*3)
	}
	for _, r := range recs {
		checkMessage(t, r.Op.String(), r.Message)
	}
}

func checkMessage(t *testing.T, what string, m transport.Message) {
	t.Helper()
	id := m.ID
	want := transport.Headers{"id": id, "bytes": []byte(id), "table": map[string]any{"id": id}}
	n, ok := m.Headers["n"].(int32)
	if !ok {
		t.Fatalf("%s %s: header n is %T", what, id, m.Headers["n"])
	}
	want["n"] = n
	if v, ok := m.Headers["x-delivery-count"]; ok {
		// Get from a quorum queue: the first delivery counts 0 returns.
		want["x-delivery-count"] = int64(0)
		if v != int64(0) {
			t.Fatalf("%s %s: x-delivery-count %v", what, id, v)
		}
	}
	if string(m.Body) != "body of "+id || !maps.EqualFunc(m.Headers, want, func(a, b any) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
		t.Fatalf("%s %s: body %q headers %v", what, id, m.Body, m.Headers)
	}
}

// TestRecycledCopiesFanOut checks that the copies of a message routed to
// several queues are independent when one of them is recycled.
func TestRecycledCopiesFanOut(t *testing.T) {
	tr := newTransport(t, memory.Options{})
	tr.Broker().SetJournalLimit(0)
	declare(t, tr, "a", "t.#")
	declare(t, tr, "b", "t.#")
	for i := range 20 {
		id := fmt.Sprint("m", i)
		err := tr.Dispatch(ctxT(t), transport.Outgoing{Exchange: transport.Topic, RoutingKey: "t.x", Message: transport.Message{
			ID: id, Body: []byte("body of " + id),
			Headers: transport.Headers{"id": id, "n": i, "bytes": []byte(id), "table": map[string]any{"id": id}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		d, ok, err := tr.Get(ctxT(t), "a")
		if err != nil || !ok {
			t.Fatalf("get: %v %v", ok, err)
		}
		checkMessage(t, "delivered from a", d.Message)
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range tr.Broker().Messages("b") {
		checkMessage(t, "in b", m)
	}
}

// TestRecycledCopiesJournalLimit runs many messages through a journal
// whose limit is not a multiple of the chunks it drops its oldest records
// by: it shows exactly the newest records, numbered without gaps, each
// with its message as it was sent, although the copies the records no
// longer hold have been recycled for newer messages.
func TestRecycledCopiesJournalLimit(t *testing.T) {
	tr := newTransport(t, memory.Options{})
	const limit = 301
	tr.Broker().SetJournalLimit(limit)
	declare(t, tr, "q")
	for i := range 1000 {
		id := fmt.Sprint("m", i)
		err := tr.Dispatch(ctxT(t), transport.Outgoing{RoutingKey: "q", Message: transport.Message{
			ID: id, Body: []byte("body of " + id),
			Headers: transport.Headers{"id": id, "n": i, "bytes": []byte(id), "table": map[string]any{"id": id}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			continue // left in the queue for a while
		}
		for range 2 {
			d, ok, err := tr.Get(ctxT(t), "q")
			if err != nil || !ok {
				t.Fatalf("get: %v %v", ok, err)
			}
			checkMessage(t, "delivered", d.Message)
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
			if tr.Broker().Depth("q") == 0 {
				break
			}
		}
		recs := tr.Broker().Journal()
		if len(recs) > limit {
			t.Fatalf("%d records, limit %d", len(recs), limit)
		}
		for k, r := range recs {
			if k > 0 && r.Seq != recs[k-1].Seq+1 {
				t.Fatalf("record %d has seq %d after %d", k, r.Seq, recs[k-1].Seq)
			}
			checkMessage(t, r.Op.String(), r.Message)
		}
		checkDispatchOrder(t, recs)
		if i > limit && len(recs) != limit {
			t.Fatalf("%d records, want %d", len(recs), limit)
		}
	}
}

// TestRecycledCopiesJournalShrink lowers the journal's limit, clears it and
// turns it off and on while messages go through, checking every record's
// message each time: the copies the journal no longer needs are recycled,
// the others are not.
func TestRecycledCopiesJournalShrink(t *testing.T) {
	tr := newTransport(t, memory.Options{})
	b := tr.Broker()
	b.SetJournalLimit(-1)
	declare(t, tr, "q")
	n := 0
	run := func(count int) {
		t.Helper()
		for range count {
			id := fmt.Sprint("m", n)
			n++
			err := tr.Dispatch(ctxT(t), transport.Outgoing{RoutingKey: "q", Message: transport.Message{
				ID: id, Body: []byte("body of " + id),
				Headers: transport.Headers{"id": id, "n": n, "bytes": []byte(id), "table": map[string]any{"id": id}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			d, ok, err := tr.Get(ctxT(t), "q")
			if err != nil || !ok {
				t.Fatalf("get: %v %v", ok, err)
			}
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
			if n%50 == 0 {
				recs := b.Journal()
				for _, r := range recs {
					checkMessage(t, r.Op.String(), r.Message)
				}
				checkDispatchOrder(t, recs)
			}
		}
	}
	run(600)
	b.SetJournalLimit(300)
	run(600)
	if got := len(b.Journal()); got != 300 {
		t.Fatalf("%d records, want 300", got)
	}
	b.ClearJournal()
	run(100)
	b.SetJournalLimit(0)
	run(100)
	b.SetJournalLimit(1000)
	run(600)
	if got := len(b.Journal()); got != 1000 {
		t.Fatalf("%d records, want 1000", got)
	}
}

// checkDispatchOrder checks that the Dispatched records show the messages
// m0, m1, ... in the order they were sent: a record whose copy was recycled
// for a newer message would show that one.
func checkDispatchOrder(t *testing.T, recs []memory.Record) {
	t.Helper()
	last := -1
	for _, r := range recs {
		if r.Op != memory.Dispatched {
			continue
		}
		var k int
		if _, err := fmt.Sscanf(r.Message.ID, "m%d", &k); err != nil || k <= last {
			t.Fatalf("dispatched record %d shows %s after m%d", r.Seq, r.Message.ID, last)
		}
		last = k
	}
}

// TestRecycledDeliveries gives deliveries back with Recycle, as package bus
// does, between deliveries of bodies of every size class, and checks that
// each delivery holds its own message: a delivery given back is reused, a
// copy of one or one given back twice is not (which would hand one
// delivery to two handlers), and one given back still settles nothing.
func TestRecycledDeliveries(t *testing.T) {
	tr := newTransport(t, memory.Options{})
	declare(t, tr, "q")
	sizes := []int{0, 1, 64, 65, 200, 256, 600, 1500, 3000, 4096, 5000}
	for round := range 3 {
		for i, size := range sizes {
			id := fmt.Sprintf("m%d-%d", round, i)
			body := make([]byte, size)
			for j := range body {
				body[j] = byte(i + j)
			}
			err := tr.Dispatch(ctxT(t), transport.Outgoing{RoutingKey: "q", Message: transport.Message{
				ID: id, Body: body, Headers: transport.Headers{"id": id},
			}})
			if err != nil {
				t.Fatal(err)
			}
		}
		var held []*transport.Delivery
		for i, size := range sizes {
			d, ok, err := tr.Get(ctxT(t), "q")
			if err != nil || !ok {
				t.Fatalf("get: %v %v", ok, err)
			}
			if len(d.Body) != size || d.Headers["id"] != fmt.Sprintf("m%d-%d", round, i) {
				t.Fatalf("delivery %d: %d bytes, headers %v", i, len(d.Body), d.Headers)
			}
			for j, c := range d.Body {
				if c != byte(i+j) {
					t.Fatalf("delivery %d: byte %d is %d", i, j, c)
				}
			}
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
			held = append(held, d)
		}
		for _, d := range held {
			tr.Recycle(&transport.Delivery{Acknowledger: d.Acknowledger, Tag: d.Tag}) // not the delivery it made: ignored
			tr.Recycle(d)
			tr.Recycle(d) // twice: ignored
		}
	}
	// Two deliveries taken after the same one was given back twice are
	// two deliveries.
	for i := range 2 {
		if err := tr.Dispatch(ctxT(t), transport.Outgoing{RoutingKey: "q", Message: transport.Message{ID: fmt.Sprint(i), Body: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
	}
	a, _, _ := tr.Get(ctxT(t), "q")
	b, _, _ := tr.Get(ctxT(t), "q")
	if a == nil || b == nil || a == b || a.ID == b.ID {
		t.Fatalf("two gets gave %p and %p", a, b)
	}
	_ = a.Ack()
	_ = b.Ack()
}
