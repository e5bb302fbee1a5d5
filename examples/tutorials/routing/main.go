package main

import (
	"context"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/examples/internal/exampleutil"
)

// LogLine is the event.
type LogLine struct {
	Severity string
	Text     string
}

func main() { exampleutil.Main("routing", run) }

func run(ctx context.Context, ex *exampleutil.Env) error {
	subscribers := map[string][]string{
		"error-archive": {"logs.error"},
		"console":       {"logs.info", "logs.warning", "logs.error"},
	}
	got := make(chan string, 10)
	for name, patterns := range subscribers {
		sub, err := bus.New(ex.Transport, name, ex.Options(bus.Options{Subscriptions: patterns}))
		if err != nil {
			return err
		}
		if err := bus.Handle(sub, func(ctx context.Context, l LogLine) error {
			ex.Printf("[%s] %s: %s", name, l.Severity, l.Text)
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
	lines := []LogLine{
		{"info", "service started"},
		{"warning", "disk 91% full"},
		{"error", "disk full"},
	}
	for _, l := range lines {
		if err := logger.Publish(ctx, "logs."+l.Severity, l); err != nil {
			return err
		}
		ex.Printf(" [x] Published %s: %s", l.Severity, l.Text)
	}
	// console gets all three, error-archive only the error.
	if _, err := exampleutil.Receive(ctx, got, 4, "the log lines"); err != nil {
		return err
	}
	ex.Printf("console got 3 lines, error-archive 1")
	return nil
}
