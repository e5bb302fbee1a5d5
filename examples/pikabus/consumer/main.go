package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/examples/internal/exampleutil"
)

var messages = flag.Int("messages", 5, "commands to send to the service, which stops once it handled them (0: send none, run until interrupted)")

// ProcessOrder is the service's command.
type ProcessOrder struct{ OrderID string }

func main() { exampleutil.Main("consumer", run) }

func run(ctx context.Context, ex *exampleutil.Env) error {
	service, err := bus.New(ex.Transport, "orders", ex.Options(bus.Options{Concurrency: 2}))
	if err != nil {
		return err
	}
	handled := make(chan string, *messages)
	if err := bus.Handle(service, func(ctx context.Context, o ProcessOrder) error {
		ex.Printf("processing %s", o.OrderID)
		time.Sleep(200 * time.Millisecond) // the work
		handled <- o.OrderID
		return nil
	}); err != nil {
		return err
	}
	if err := service.Start(ctx); err != nil {
		return err
	}
	defer service.Close() // on an early return; nothing after Shutdown
	ex.Printf("consuming; Ctrl-C stops")

	if *messages > 0 {
		client, err := bus.New(ex.Transport, "", ex.Options(bus.Options{}))
		if err != nil {
			return err
		}
		for i := 1; i <= *messages; i++ {
			if err := client.Send(ctx, "orders", ProcessOrder{OrderID: fmt.Sprintf("order-%d", i)}); err != nil {
				return err
			}
		}
		if _, err := exampleutil.Receive(ctx, handled, *messages, "the orders"); err != nil {
			return err
		}
		ex.Printf("handled all %d orders", *messages)
	} else {
		<-ctx.Done() // SIGINT, SIGTERM or -timeout: stop as asked
	}

	// Graceful: up to 10 seconds for the handlers under way.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := service.Shutdown(sctx); err != nil {
		return err
	}
	ex.Printf("stopped")
	return nil
}
