package main

import (
	"context"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/examples/internal/exampleutil"
)

// LogLine is the event.
type LogLine struct{ Text string }

func main() { exampleutil.Main("pubsub", run) }

func run(ctx context.Context, ex *exampleutil.Env) error {
	lines := []string{"service started", "user logged in", "disk 91% full"}
	got := make(chan string, 2*len(lines))
	for _, name := range []string{"disk-writer", "screen-printer"} {
		sub, err := bus.New(ex.Transport, name, ex.Options(bus.Options{Subscriptions: []string{"logs"}}))
		if err != nil {
			return err
		}
		if err := bus.Handle(sub, func(ctx context.Context, l LogLine) error {
			ex.Printf("[%s] %s", name, l.Text)
			got <- name
			return nil
		}); err != nil {
			return err
		}
		if err := sub.Start(ctx); err != nil {
			return err
		}
		defer sub.Shutdown(context.WithoutCancel(ctx))
	}

	logger, err := bus.New(ex.Transport, "", ex.Options(bus.Options{}))
	if err != nil {
		return err
	}
	for _, l := range lines {
		if err := logger.Publish(ctx, "logs", LogLine{Text: l}); err != nil {
			return err
		}
		ex.Printf(" [x] Published %q", l)
	}
	if _, err := exampleutil.Receive(ctx, got, 2*len(lines), "the log lines"); err != nil {
		return err
	}
	ex.Printf("both subscribers got all %d lines", len(lines))
	return nil
}
