package saga_test

import (
	"context"
	"fmt"
	"log"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/saga"
)

// A saga that waits for two messages, in any order, then answers the
// message that started it.
func Example() {
	type (
		Open    struct{ ID string }
		Approve struct{ ID, By string }
		Result  struct{ ID, Outcome string }
	)
	type Approvals struct{ By []string }

	sg := saga.New[Approvals]("Approvals", saga.Options{})
	saga.StartedBy(sg, func(m Open) string { return m.ID },
		func(ctx context.Context, s *saga.Instance[Approvals], m Open) error { return nil })
	saga.Handles(sg, func(m Approve) string { return m.ID },
		func(ctx context.Context, s *saga.Instance[Approvals], m Approve) error {
			s.State.By = append(s.State.By, m.By)
			if len(s.State.By) < 2 {
				return nil
			}
			s.Complete()
			return s.ReplyToOriginator(Result{ID: m.ID, Outcome: fmt.Sprintf("approved by %d", len(s.State.By))})
		})

	ctx := context.Background()
	t := memory.New(memory.Options{})
	defer t.Close()
	b, err := bus.New(t, "approvals", bus.Options{Logger: testLogger()})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	if err := sg.Register(b, saga.NewMemoryStore()); err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}

	// The client opens the approval and gets the result; the approvals
	// arrive later, from anywhere.
	client, err := bus.New(t, "client", bus.Options{Logger: testLogger()})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	done := make(chan Result)
	if err := bus.Handle(client, func(ctx context.Context, r Result) error { done <- r; return nil }); err != nil {
		log.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		log.Fatal(err)
	}
	for _, m := range []any{Open{ID: "doc-1"}, Approve{ID: "doc-1", By: "ann"}, Approve{ID: "doc-1", By: "bob"}} {
		if err := client.Send(ctx, "approvals", m); err != nil {
			log.Fatal(err)
		}
	}
	r := <-done
	fmt.Println(r.ID, r.Outcome)
	// Output: doc-1 approved by 2
}
