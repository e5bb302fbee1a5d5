package memory_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// TestQueueAgainstModel drives a queue with random publishes, gets, acks,
// nacks and connection losses and checks its contents after every step
// against a model of RabbitMQ's rules: FIFO; a returned message (lost
// connection, or a nack in a classic queue) goes back to its original
// position; a message nacked with requeue in a quorum queue goes to the
// back; a nack without requeue drops.
func TestQueueAgainstModel(t *testing.T) {
	for _, typ := range []transport.QueueType{transport.Classic, transport.Quorum} {
		t.Run(string(typ), func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, uint64(len(typ))))
			ctx := context.Background()
			tr := newTransport(t, memory.Options{})
			b := tr.Broker()
			b.SetJournalLimit(0)
			must(t, tr.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "q", Type: typ}}))

			type msg struct {
				id  string
				pos int // original position; a quorum requeue gives a new one
			}
			var (
				ready []msg
				held  []*transport.Delivery
				pos   = map[string]int{}
				next  int
			)
			insert := func(m msg) {
				i, _ := slices.BinarySearchFunc(ready, m.pos, func(x msg, p int) int { return x.pos - p })
				ready = slices.Insert(ready, i, m)
			}
			for step := range 3000 {
				switch op := r.IntN(100); {
				case op < 30:
					next++
					id := fmt.Sprint(next)
					pos[id] = next
					send(t, tr, "q", id)
					ready = append(ready, msg{id, next})
				case op < 55:
					d, ok, err := tr.Get(ctx, "q")
					must(t, err)
					if ok != (len(ready) > 0) {
						t.Fatalf("step %d: Get ok %v with %d ready", step, ok, len(ready))
					}
					if !ok {
						continue
					}
					if d.ID != ready[0].id {
						t.Fatalf("step %d: got %s, want %s", step, d.ID, ready[0].id)
					}
					ready = ready[1:]
					held = append(held, d)
				case op < 95 && len(held) > 0:
					i := r.IntN(len(held))
					d := held[i]
					held = slices.Delete(held, i, i+1)
					switch op % 3 {
					case 0:
						must(t, d.Ack())
					case 1:
						must(t, d.Nack(false))
					case 2:
						must(t, d.Nack(true))
						if typ == transport.Quorum {
							next++
							pos[d.ID] = next
						}
						insert(msg{d.ID, pos[d.ID]})
					}
				case op >= 95:
					// Every delivery held goes back to where it was.
					b.DropConnections()
					for _, d := range held {
						insert(msg{d.ID, pos[d.ID]})
						mustIs(t, d.Ack(), transport.ErrConnectionLost)
					}
					held = nil
				}
				var want []string
				for _, m := range ready {
					want = append(want, m.id)
				}
				var got []string
				for _, m := range b.Messages("q") {
					got = append(got, m.ID)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("step %d: queue holds %v, model %v", step, got, want)
				}
				if st, _ := b.Stats("q"); st.Unacked != len(held) {
					t.Fatalf("step %d: %d unacked, model %d", step, st.Unacked, len(held))
				}
			}
		})
	}
}
