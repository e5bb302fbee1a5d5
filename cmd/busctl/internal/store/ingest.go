package store

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/busline/busline/transport"
)

// IngestOptions tune [Store.Ingest].
type IngestOptions struct {
	// Follow keeps ingesting until ctx ends; otherwise Ingest returns once
	// the queue is empty.
	Follow bool
	// Progress, if not nil, is called after each batch with the number of
	// messages ingested so far and the queue's depth when it last looked.
	Progress func(done, remaining int)
	// Batch is how many messages are stored per transaction; zero means
	// 500.
	Batch int
}

type ingested struct {
	d    *transport.Delivery
	done chan error
}

// Ingest moves the messages of the error queue into the store: each is
// stored, the transaction committed, and only then acked on the queue, so a
// crash in between leaves it on the queue and the next ingest stores it
// once (a message the store holds already is not stored twice). t must
// also be a [transport.Inspector] unless opts.Follow is set. Ingest returns
// how many messages it stored.
//
// Ingesting takes the messages off the queue: they live in the store from
// then on, where listing, grouping and filtering them is a query, and
// browsing neither reorders nor redelivers what is on the broker. A queue
// that does not exist is empty (error wrapping transport.ErrNotFound only
// with Follow, which waits for it to appear).
func (s *Store) Ingest(ctx context.Context, t transport.Transport, queue string, opts IngestOptions) (int, error) {
	total := 0
	for {
		n, err := s.ingestOnce(ctx, t, queue, opts)
		total += n
		if err != nil || opts.Follow || n == 0 {
			return total, err
		}
		// The queue looked empty while deliveries were prefetched but not
		// yet handed over (a loaded machine): stopping the consumer gave
		// them back to the queue. Look again, and take them too.
		info, err := t.(transport.Inspector).Inspect(ctx, queue)
		if err != nil || info.Messages == 0 {
			return total, nil
		}
	}
}

// ingestOnce consumes until the queue looks empty (or, with Follow, until
// ctx ends) and stops its consumer.
func (s *Store) ingestOnce(ctx context.Context, t transport.Transport, queue string, opts IngestOptions) (int, error) {
	batch := opts.Batch
	if batch <= 0 {
		batch = 500
	}
	insp, _ := t.(transport.Inspector)
	if insp == nil && !opts.Follow {
		return 0, fmt.Errorf("ingest %q: the transport cannot inspect queues: %w", queue, transport.ErrNotSupported)
	}
	remaining := 0
	if insp != nil {
		info, err := insp.Inspect(ctx, queue)
		if errors.Is(err, transport.ErrNotFound) && !opts.Follow {
			return 0, nil
		}
		if err != nil && !opts.Follow {
			return 0, fmt.Errorf("ingest %q: %w", queue, err)
		}
		remaining = info.Messages
		if remaining == 0 && !opts.Follow {
			return 0, nil
		}
	}
	ch := make(chan ingested, 2*batch)
	// Each handler call waits for its message's batch to be committed and
	// acks it itself, so that Drain (which waits for the handlers) leaves
	// nothing unsettled and nothing requeued that was stored.
	c, err := t.Consume(ctx, queue, transport.ConsumeOptions{Concurrency: 2 * batch, Prefetch: 2 * batch, Tag: "busctl-ingest"},
		func(hctx context.Context, d *transport.Delivery) {
			it := ingested{d: d, done: make(chan error, 1)}
			select {
			case ch <- it:
			case <-hctx.Done():
				return // unsettled: requeued when the consumer stops
			}
			var err error
			select {
			case err = <-it.done:
			case <-hctx.Done():
				err = <-it.done // the batch is being committed: wait for its outcome
			}
			if err != nil {
				d.Nack(true)
				return
			}
			d.Ack()
		})
	if err != nil {
		return 0, fmt.Errorf("ingest %q: %w", queue, err)
	}
	drained := make(chan error, 1)
	draining := false
	var consumerDone <-chan struct{}
	stop := func() {
		if !draining {
			draining = true
			consumerDone = nil // Drain's end is reported on drained
			go func() { drained <- c.Drain(context.WithoutCancel(ctx)) }()
		}
	}
	defer func() {
		if !draining {
			c.Close()
		}
	}()
	n := 0
	pending := make([]ingested, 0, batch)
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		// Handlers run concurrently: put the batch back in queue order.
		slices.SortFunc(pending, func(a, b ingested) int { return cmp.Compare(a.d.Tag, b.d.Tag) })
		msgs := make([]*transport.Message, len(pending))
		for i, it := range pending {
			msgs[i] = &it.d.Message
		}
		_, err := s.Add(context.WithoutCancel(ctx), queue, s.now(), msgs...)
		for _, it := range pending {
			it.done <- err
		}
		if err == nil {
			n += len(pending)
		}
		pending = pending[:0]
		return err
	}
	idle := time.NewTimer(time.Hour)
	defer idle.Stop()
	ctxDone := ctx.Done()
	consumerDone = c.Done()
	for {
		idle.Reset(100 * time.Millisecond)
		select {
		case it := <-ch:
			pending = append(pending, it)
			if len(pending) < batch {
				continue
			}
		case <-idle.C:
		case <-ctxDone:
			ctxDone = nil
			stop()
		case <-consumerDone:
			// The consumer stopped by itself (its queue was deleted, the
			// connection cannot recover): its handlers have returned.
			if ferr := flush(); ferr != nil {
				return n, fmt.Errorf("ingest %q: %w", queue, ferr)
			}
			return n, fmt.Errorf("ingest %q: the consumer stopped: %w", queue, c.Err())
		case err := <-drained:
			// Every handler returned: what they handed over is in ch.
			for {
				select {
				case it := <-ch:
					pending = append(pending, it)
					continue
				default:
				}
				break
			}
			if ferr := flush(); ferr != nil {
				return n, fmt.Errorf("ingest %q: %w", queue, ferr)
			}
			if err != nil && ctx.Err() == nil {
				return n, fmt.Errorf("ingest %q: %w", queue, err)
			}
			return n, ctx.Err()
		}
		if err := flush(); err != nil {
			stop()
			<-drained
			return n, fmt.Errorf("ingest %q: %w", queue, err)
		}
		if opts.Progress != nil {
			opts.Progress(n, max(remaining-n, 0))
		}
		if !opts.Follow && !draining && len(ch) == 0 {
			info, err := insp.Inspect(ctx, queue)
			if err == nil && info.Messages == 0 {
				stop()
			}
		}
	}
}

// ExportRecord is one line of an export: a failed message with what the
// store knows of it.
type ExportRecord struct {
	ErrorQueue string      `json:"error_queue"`
	FailedAt   time.Time   `json:"failed_at"`
	Message    WireMessage `json:"message"`
}

// Export writes the messages f selects to w as JSON Lines, one
// [ExportRecord] a line; it returns how many.
func (s *Store) Export(ctx context.Context, w io.Writer, f Filter, progress func(done int)) (int, error) {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	n := 0
	err := s.Each(ctx, f, true, func(m *Failed) error {
		if err := enc.Encode(ExportRecord{ErrorQueue: m.ErrorQueue, FailedAt: m.FailedAt, Message: *m.Message}); err != nil {
			return err
		}
		n++
		if progress != nil && n%1000 == 0 {
			progress(n)
		}
		return nil
	})
	if err == nil {
		err = bw.Flush()
	}
	return n, err
}

// Import stores the messages of an export (JSON Lines of [ExportRecord]);
// a message the store holds already is skipped. It returns how many lines
// it read and how many messages it stored; a bad line stops it with an
// error naming the line.
func (s *Store) Import(ctx context.Context, r io.Reader, defaultErrorQueue string, progress func(done int)) (read, stored int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	type item struct {
		q  string
		at time.Time
		m  transport.Message
	}
	var pending []item
	flush := func() error {
		// Group by (queue, time) runs to keep Add's signature simple.
		for len(pending) > 0 {
			j := 1
			for j < len(pending) && pending[j].q == pending[0].q && pending[j].at.Equal(pending[0].at) {
				j++
			}
			msgs := make([]*transport.Message, j)
			for i := range j {
				msgs[i] = &pending[i].m
			}
			k, err := s.Add(ctx, pending[0].q, pending[0].at, msgs...)
			if err != nil {
				return err
			}
			stored += k
			pending = pending[j:]
		}
		return nil
	}
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var rec ExportRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return read, stored, fmt.Errorf("line %d: %w", line, err)
		}
		m, err := rec.Message.Message()
		if err != nil {
			return read, stored, fmt.Errorf("line %d: %w", line, err)
		}
		if rec.ErrorQueue == "" {
			rec.ErrorQueue = defaultErrorQueue
		}
		if rec.FailedAt.IsZero() {
			rec.FailedAt = s.now()
		}
		pending = append(pending, item{rec.ErrorQueue, rec.FailedAt, m})
		read++
		if len(pending) >= 1000 {
			if err := flush(); err != nil {
				return read, stored, err
			}
			if progress != nil {
				progress(read)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return read, stored, fmt.Errorf("line %d: %w", line+1, err)
	}
	return read, stored, flush()
}
