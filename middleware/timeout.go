package middleware

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Timeout returns a stage that gives the handling below it at most d: the
// context passed on ends after d. A handler that returns an error because of
// it fails like any other (it is retried); the error says that the time ran
// out. The stage cannot stop a handler that ignores its context: it waits for
// next to return. d must be positive.
func Timeout(d time.Duration) (Middleware, error) {
	if d <= 0 {
		return nil, fmt.Errorf("middleware.Timeout: duration %v must be positive", d)
	}
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			tctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			err := next(tctx, m)
			if err != nil && ctx.Err() == nil && errors.Is(tctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("handler timed out after %v: %w", d, err)
			}
			return err
		}
	}, nil
}
