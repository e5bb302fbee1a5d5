package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/busline/busline/middleware"
)

// RelayOptions configure [Outbox.Relay].
type RelayOptions struct {
	// Interval is how long the relay waits when it found nothing to
	// dispatch before it looks again. Zero means 1 s.
	Interval time.Duration
	// BatchSize is how many messages it leases and dispatches at once.
	// Zero means 100.
	BatchSize int
	// CleanupInterval is how often it deletes what is older than
	// [Options.Retention]. Zero means 1 minute; negative, never (run
	// [Outbox.Cleanup] yourself).
	CleanupInterval time.Duration
	// CleanupBatch bounds how many rows one delete statement removes, so
	// that a cleanup never holds long locks. Zero means 1000.
	CleanupBatch int
}

func (r *RelayOptions) defaults() {
	if r.Interval <= 0 {
		r.Interval = time.Second
	}
	if r.BatchSize <= 0 {
		r.BatchSize = 100
	}
	if r.CleanupInterval == 0 {
		r.CleanupInterval = time.Minute
	}
	if r.CleanupBatch <= 0 {
		r.CleanupBatch = 1000
	}
}

// Relay dispatches the stored messages that nobody dispatched (a process
// stopped between its commit and its dispatch, or the broker refused the
// messages then) through s, typically the endpoint's [bus.Bus.Sender],
// until ctx is done; then it returns nil. It leaves each message
// [Options.RelayAfter] to the unit of work that stored it, leases the
// messages it dispatches for [Options.Lease] (several relays, in several
// processes, share the work without dispatching a message twice, unless a
// lease runs out mid-dispatch), and backs off from a message the broker
// refuses (1 s doubling to 5 minutes). Every CleanupInterval it deletes
// inbox records and dispatched messages older than [Options.Retention].
//
// Errors are logged, and the relay goes on.
func (o *Outbox) Relay(ctx context.Context, s middleware.Sender, opts RelayOptions) error {
	opts.defaults()
	var lastCleanup time.Time
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := o.RelayOnce(ctx, s, opts.BatchSize)
		if err != nil && ctx.Err() == nil {
			o.log.WarnContext(ctx, "outbox relay: dispatching stored messages failed", "error", err)
		}
		if opts.CleanupInterval > 0 && time.Since(lastCleanup) >= opts.CleanupInterval {
			lastCleanup = time.Now()
			if _, err := o.Cleanup(ctx, opts.CleanupBatch); err != nil && ctx.Err() == nil {
				o.log.WarnContext(ctx, "outbox relay: cleanup failed", "error", err)
			}
		}
		if n == opts.BatchSize && err == nil {
			t.Reset(0)
		} else {
			t.Reset(opts.Interval)
		}
	}
}

// RelayOnce leases up to batch stored messages that are due, dispatches
// them through s as one batch, marks those confirmed dispatched and
// reschedules the others. It returns how many it dispatched.
func (o *Outbox) RelayOnce(ctx context.Context, s middleware.Sender, batch int) (int, error) {
	if batch <= 0 {
		batch = 100
	}
	now := time.Now()
	rows, err := o.claim(ctx, o.q.ClaimDue, now.Add(o.opts.Lease).UnixMicro(), now.UnixMicro(), batch)
	if err != nil {
		return 0, fmt.Errorf("outbox relay: leasing stored messages from %s: %w", o.tables.Outbox, err)
	}
	n, err := o.dispatchRows(ctx, s, rows)
	if err != nil {
		err = fmt.Errorf("outbox relay: %d of %d messages from %s dispatched: %w", n, len(rows), o.tables.Outbox, err)
	}
	return n, err
}

// Cleanup deletes the inbox records and the dispatched messages older
// than [Options.Retention], in statements of at most batch rows each (1000
// if batch is not positive), and returns how many rows it deleted.
func (o *Outbox) Cleanup(ctx context.Context, batch int) (int, error) {
	if batch <= 0 {
		batch = 1000
	}
	before := time.Now().Add(-o.opts.Retention).UnixMicro()
	total := 0
	for _, q := range []struct{ what, query string }{
		{o.tables.Inbox, o.q.DeleteInbox},
		{o.tables.Outbox, o.q.DeleteDispatched},
	} {
		for {
			if err := ctx.Err(); err != nil {
				return total, err
			}
			res, err := o.db.ExecContext(ctx, q.query, before, batch)
			if err != nil {
				return total, fmt.Errorf("outbox cleanup of %s: %w", q.what, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return total, fmt.Errorf("outbox cleanup of %s: %w", q.what, err)
			}
			total += int(n)
			if n < int64(batch) {
				break
			}
		}
	}
	return total, nil
}

// Pending returns the number of stored messages not yet dispatched.
func (o *Outbox) Pending(ctx context.Context) (int, error) {
	var n int
	if err := o.db.QueryRowContext(ctx, o.q.Pending).Scan(&n); err != nil {
		return 0, fmt.Errorf("outbox: counting pending messages in %s: %w", o.tables.Outbox, err)
	}
	return n, nil
}
