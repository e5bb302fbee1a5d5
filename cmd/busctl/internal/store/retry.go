package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/busline/busline/transport"
)

// Dispatcher sends messages and returns once the broker confirmed them:
// [transport.Transport.Dispatch].
type Dispatcher interface {
	Dispatch(ctx context.Context, msgs ...transport.Outgoing) error
}

// RetryBatch is how many messages Retry sends and confirms at a time by
// default.
const RetryBatch = 500

// Retried is a message a retry sent back to its source queue.
type Retried struct {
	Seq         int64  `json:"seq"`
	ID          string `json:"id"`
	SourceQueue string `json:"source_queue"`
}

// Left is a message a retry was asked to send but kept, with the reason.
type Left struct {
	Seq         int64  `json:"seq"`
	ID          string `json:"id"`
	SourceQueue string `json:"source_queue"`
	Reason      string `json:"reason"`
}

// RetryResult is what [Store.Retry] did.
type RetryResult struct {
	Retried []Retried `json:"retried"`
	Left    []Left    `json:"left"`
}

// ErrNoSourceQueue is the reason Retry keeps a message without a usable
// SourceQueue header.
var ErrNoSourceQueue = errors.New("no usable SourceQueue header")

// Retry sends the messages f selects back to the queues they failed in,
// with the semantics of middleware.Replay: through the direct exchange with
// Mandatory set, body, properties and headers unchanged but for
// ErrorRetries, DeferredTime, ErrorDetails, SourceQueue and
// x-delivery-count, which are removed, so that each starts afresh with a
// full set of retries.
//
// Messages go in batches of [Options.RetryBatch]; a message leaves the store only
// after the broker confirmed it on its source queue, so a retry stopped
// half way by a crash may send the last batch twice but never loses one.
// When ctx ends, Retry finishes the batch under way (it is confirmed and
// removed, bounded by a minute) and stops before the next: an interrupted
// retry neither loses nor duplicates. A message the broker refuses (its
// queue no longer exists: transport.ErrUnroutable) stays in the store and
// is listed in RetryResult.Left. progress, if not nil, is called after each
// batch.
func (s *Store) Retry(ctx context.Context, d Dispatcher, f Filter, progress func(done, total int)) (RetryResult, error) {
	var res RetryResult
	seqs, err := s.seqs(ctx, f)
	if err != nil {
		return res, err
	}
	total, done := len(seqs), 0
	for len(seqs) > 0 {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("retry interrupted after %d of %d messages (the rest are still stored): %w", done, total, err)
		}
		batch := seqs[:min(len(seqs), s.batch)]
		seqs = seqs[len(batch):]
		// The batch under way runs to its end: its messages are confirmed
		// and removed, or kept, but never sent and kept.
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		err := s.retryBatch(bctx, d, batch, &res)
		cancel()
		if err != nil {
			return res, err
		}
		done += len(batch)
		if progress != nil {
			progress(done, total)
		}
	}
	return res, nil
}

func (s *Store) retryBatch(ctx context.Context, d Dispatcher, seqs []int64, res *RetryResult) error {
	var msgs []Failed
	// Refs match ids too; the seqs are the store's own, so look them up by
	// seq alone.
	if err := s.eachSeq(ctx, seqs, func(f *Failed) error { msgs = append(msgs, *f); return nil }); err != nil {
		return err
	}
	var outs []transport.Outgoing
	var sent []Failed
	for _, f := range msgs {
		if transport.ValidateQueueName(f.SourceQueue) != nil || f.SourceQueue == f.ErrorQueue {
			res.Left = append(res.Left, Left{Seq: f.Seq, ID: f.ID, SourceQueue: f.SourceQueue, Reason: ErrNoSourceQueue.Error()})
			continue
		}
		m, err := f.Message.Message()
		if err != nil {
			res.Left = append(res.Left, Left{Seq: f.Seq, ID: f.ID, SourceQueue: f.SourceQueue, Reason: err.Error()})
			continue
		}
		for _, h := range []string{s.names.ErrorRetries, s.names.DeferredTime, s.names.ErrorDetails, s.names.SourceQueue, "x-delivery-count"} {
			delete(m.Headers, h)
		}
		outs = append(outs, transport.Outgoing{Exchange: transport.Direct, RoutingKey: f.SourceQueue, Mandatory: true, Message: m})
		sent = append(sent, f)
	}
	if len(outs) == 0 {
		return nil
	}
	// Hold the writers' lock from the dispatch to the delete: an ingest of
	// this process must not store a message that failed again at once while
	// its old record is still here (it would be taken for a redelivery).
	s.mu.Lock()
	defer s.mu.Unlock()
	derr := d.Dispatch(ctx, outs...)
	failed := make(map[int]error)
	if derr != nil {
		var des []*transport.DispatchError
		collectDispatchErrors(derr, &des)
		if len(des) == 0 {
			// Not attributable to single messages: keep them all (some may
			// have been delivered; a later retry duplicates, never loses).
			return fmt.Errorf("retry: sending %d messages: %w", len(outs), derr)
		}
		for _, de := range des {
			failed[de.Index] = de.Err
		}
	}
	var ok []int64
	for i, f := range sent {
		if e, bad := failed[i]; bad {
			res.Left = append(res.Left, Left{Seq: f.Seq, ID: f.ID, SourceQueue: f.SourceQueue, Reason: e.Error()})
			continue
		}
		ok = append(ok, f.Seq)
		res.Retried = append(res.Retried, Retried{Seq: f.Seq, ID: f.ID, SourceQueue: f.SourceQueue})
	}
	if err := s.deleteSeqsLocked(ctx, ok); err != nil {
		return fmt.Errorf("retry: %d messages were sent back but are still stored: %w", len(ok), err)
	}
	return nil
}

func collectDispatchErrors(err error, out *[]*transport.DispatchError) {
	var de *transport.DispatchError
	if errors.As(err, &de) && de == err {
		*out = append(*out, de)
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			collectDispatchErrors(e, out)
		}
		return
	}
	if errors.As(err, &de) {
		*out = append(*out, de)
	}
}

func (s *Store) eachSeq(ctx context.Context, seqs []int64, fn func(*Failed) error) error {
	q := "SELECT " + listColumns + ", msg FROM failed WHERE seq IN ("
	args := make([]any, len(seqs))
	for i, n := range seqs {
		if i > 0 {
			q += ","
		}
		q += "?"
		args[i] = n
	}
	rows, err := s.db.QueryContext(ctx, q+") ORDER BY seq", args...)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		f, err := scanFailed(rows, true)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		if err := fn(&f); err != nil {
			return err
		}
	}
	return rows.Err()
}
