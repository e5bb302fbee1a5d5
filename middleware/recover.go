package middleware

import (
	"context"
	"fmt"
	"runtime/debug"
)

// PanicError is a panic in a handler, recovered by the [Recover] stage.
type PanicError struct {
	// Value is the value the handler panicked with.
	Value any
	// Stack is the panicking goroutine's stack trace, as
	// runtime/debug.Stack formats it.
	Stack []byte
}

// Error returns "panic: " and the panic value; the stack is in Stack.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap returns the panic value if it is an error, so that a handler that
// panics with Permanent(err) fails permanently.
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}

// Recover returns the panic-recovery stage: a panic below it becomes a
// [*PanicError] carrying the panic value and the stack, which is retried and
// forwarded to the error queue like any other error (the ErrorQueue stage
// writes the stack into ErrorDetails). Without it a panicking handler
// crashes the process.
func Recover() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) (err error) {
			defer func() {
				if v := recover(); v != nil {
					err = &PanicError{Value: v, Stack: debug.Stack()}
				}
			}()
			return next(ctx, m)
		}
	}
}
