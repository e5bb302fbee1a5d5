package main

import (
	"context"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/examples/internal/exampleutil"
)

// FibRequest asks for the Nth Fibonacci number; FibReply answers it.
type (
	FibRequest struct{ N int }
	FibReply   struct{ N, Fib int }
)

func fib(n int) int {
	a, b := 0, 1
	for range n {
		a, b = b, a+b
	}
	return a
}

func main() { exampleutil.Main("rpc", run) }

func run(ctx context.Context, ex *exampleutil.Env) error {
	server, err := bus.New(ex.Transport, "rpc", ex.Options(bus.Options{}))
	if err != nil {
		return err
	}
	if err := bus.Handle(server, func(ctx context.Context, req FibRequest) error {
		ex.Printf(" [.] fib(%d)", req.N)
		return server.Reply(ctx, FibReply{N: req.N, Fib: fib(req.N)})
	}); err != nil {
		return err
	}
	if err := server.Start(ctx); err != nil {
		return err
	}
	defer server.Shutdown(context.WithoutCancel(ctx))

	client, err := bus.New(ex.Transport, "", ex.Options(bus.Options{}))
	if err != nil {
		return err
	}
	defer client.Shutdown(context.WithoutCancel(ctx)) // removes its reply queue
	for _, n := range []int{10, 30, 90} {
		ex.Printf(" [x] Requesting fib(%d)", n)
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		reply, err := bus.Request[FibReply](rctx, client, "rpc", FibRequest{N: n})
		cancel()
		if err != nil {
			return err
		}
		ex.Printf(" [.] Got fib(%d) = %d", reply.N, reply.Fib)
	}
	return nil
}
