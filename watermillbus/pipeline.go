package watermillbus

import (
	"github.com/busline/busline/bus"
	"github.com/busline/busline/middleware"
)

// Pipeline is the handling pipeline for a bus over a [Transport], which
// cannot defer messages and so cannot run the standard pipeline's delayed
// retries: a failed message is retried at once, up to immediate times,
// then forwarded to the error queue with PikaBus's failure headers; a
// panic is recovered as a failure. Give it as bus.Options.Pipeline.
func Pipeline(immediate int) func(b *bus.Bus) (middleware.Middleware, error) {
	return func(b *bus.Bus) (middleware.Middleware, error) {
		eq, err := middleware.ErrorQueue(b.Sender(), middleware.ErrorQueueOptions{
			Queue: b.ErrorQueue(), Headers: b.HeaderNames(), OnForward: b.OnForward,
		})
		if err != nil {
			return nil, err
		}
		retry, err := middleware.Retry(b.Sender(), middleware.RetryOptions{
			Immediate: immediate, MaxRetries: -1, Headers: b.HeaderNames(), OnRetry: b.OnRetry,
		})
		if err != nil {
			return nil, err
		}
		return middleware.Chain(eq, retry, middleware.Recover()), nil
	}
}
