package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/busline/busline/cmd/busctl/internal/store"
	"github.com/busline/busline/transport"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/spf13/cobra"
)

// QueueRow is a line of busctl queues.
type QueueRow struct {
	Name      string `json:"name"`
	Exists    bool   `json:"exists"`
	Messages  int    `json:"messages"`
	Consumers int    `json:"consumers"`
	Type      string `json:"type"`
	Failed    int    `json:"failed"`
	Role      string `json:"role"`
	Error     string `json:"error,omitempty"`
}

func newQueuesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "queues [QUEUE...]",
		Short: "Show endpoint queues: depth, consumers, type, failed messages",
		Long: `queues shows each queue's ready messages, consumers and type, and how many of
its messages failed (in the store), with the error queue's own depth.

RabbitMQ's AMQP protocol cannot list queues (only the management plugin,
which busline does not require, can), so the queues shown are those named
on the command line plus every source queue of a failed message in the
store, plus the error queue. The type (quorum or classic) is read by
declaring the existing queue again with each x-queue-type: RabbitMQ accepts
only its own; "?" when neither matches its other arguments.`,
		Example: `  busctl queues
  busctl queues orders billing shipping -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, b, closeAll, err := g.session(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer closeAll()
			rows, err := queueRows(cmd.Context(), s, b, g.errorQueue, args)
			if err != nil {
				return err
			}
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), rows)
			}
			w := table(cmd.OutOrStdout())
			fmt.Fprintln(w, "QUEUE\tROLE\tTYPE\tMESSAGES\tCONSUMERS\tFAILED")
			for _, r := range rows {
				if !r.Exists {
					fmt.Fprintf(w, "%s\t%s\t-\t-\t-\t%d\t(%s)\n", r.Name, r.Role, r.Failed, r.Error)
					continue
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\n", r.Name, r.Role, r.Type, r.Messages, r.Consumers, r.Failed)
			}
			return w.Flush()
		},
	}
}

// queueRows inspects the named queues, the failed messages' source queues
// and the error queue.
func queueRows(ctx context.Context, s *store.Store, b *broker, errorQueue string, named []string) ([]QueueRow, error) {
	sources, err := s.Sources(ctx)
	if err != nil {
		return nil, err
	}
	names := slices.Clone(named)
	for q := range sources {
		if q != "" {
			names = append(names, q)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	names = slices.DeleteFunc(names, func(q string) bool { return q == errorQueue })
	names = append([]string{errorQueue}, names...)
	insp, ok := b.t.(transport.Inspector)
	if !ok {
		return nil, fmt.Errorf("the transport cannot inspect queues: %w", transport.ErrNotSupported)
	}
	total := 0
	for _, n := range sources {
		total += n
	}
	var rows []QueueRow
	for _, q := range names {
		r := QueueRow{Name: q, Role: "endpoint", Failed: sources[q], Type: "?"}
		if q == errorQueue {
			r.Role, r.Failed = "error queue", total
		}
		if err := transport.ValidateQueueName(q); err != nil {
			r.Error = err.Error()
			rows = append(rows, r)
			continue
		}
		info, err := insp.Inspect(ctx, q)
		switch {
		case errors.Is(err, transport.ErrNotFound):
			r.Error = "no such queue"
		case err != nil:
			return nil, err
		default:
			r.Exists, r.Messages, r.Consumers = true, info.Messages, info.Consumers
			r.Type = b.queueType(q)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// queueType tells a queue's type. AMQP has no query for it: RabbitMQ
// accepts a declaration of an existing queue only with its own
// x-queue-type, so declare it with each (on a throwaway channel, which a
// refusal closes). The queue exists (Inspect found it), so nothing is
// created, but for a queue deleted in between.
func (b *broker) queueType(q string) string {
	if b.url == "" {
		return "memory"
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.types[q]; ok && time.Since(c.at) < time.Minute {
		return c.typ
	}
	typ := b.probeType(q)
	if b.types == nil {
		b.types = make(map[string]typeSeen)
	}
	b.types[q] = typeSeen{typ, time.Now()}
	return typ
}

// typeSeen is a queue type probed at a time; serve's overview asks every
// few seconds, and a queue's type does not change while it exists.
type typeSeen struct {
	typ string
	at  time.Time
}

func (b *broker) probeType(q string) string {
	conn, err := amqp091.DialConfig(b.url, amqp091.Config{Properties: amqp091.Table{"connection_name": "busctl queue type"}})
	if err != nil {
		return "?"
	}
	defer conn.Close()
	for _, typ := range []string{"quorum", "classic", "stream"} {
		ch, err := conn.Channel()
		if err != nil {
			return "?"
		}
		if _, err := ch.QueueDeclarePassive(q, true, false, false, false, nil); err != nil {
			ch.Close()
			return "?"
		}
		_, err = ch.QueueDeclare(q, true, false, false, false, amqp091.Table{"x-queue-type": typ})
		ch.Close()
		if err == nil {
			return typ
		}
	}
	return "?"
}
