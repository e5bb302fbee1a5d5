package main

import (
	"context"
	"errors"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/examples/internal/exampleutil"
)

// Sighting is the event: an animal was seen.
type Sighting struct{ Topic string }

func main() { exampleutil.Main("topics", run) }

func run(ctx context.Context, ex *exampleutil.Env) error {
	got := make(chan string, 10)
	for _, q := range []struct {
		name     string
		patterns []string
	}{
		{"Q1", []string{"*.orange.*"}},
		{"Q2", []string{"*.*.rabbit", "lazy.#"}},
	} {
		sub, err := bus.New(ex.Transport, q.name, ex.Options(bus.Options{Subscriptions: q.patterns}))
		if err != nil {
			return err
		}
		if err := bus.Handle(sub, func(ctx context.Context, s Sighting) error {
			ex.Printf("%s %v got %s", q.name, q.patterns, s.Topic)
			got <- q.name
			return nil
		}); err != nil {
			return err
		}
		if err := sub.Start(ctx); err != nil {
			return err
		}
		defer sub.Shutdown(context.WithoutCancel(ctx))
	}

	publisher, err := bus.New(ex.Transport, "", ex.Options(bus.Options{}))
	if err != nil {
		return err
	}
	for _, topic := range []string{
		"quick.orange.rabbit",     // Q1 and Q2
		"lazy.orange.elephant",    // Q1 and Q2
		"quick.orange.fox",        // Q1
		"lazy.brown.fox",          // Q2
		"lazy.pink.rabbit",        // Q2, once, though both its patterns match
		"lazy.orange.new.rabbit",  // Q2: "#" matches two words
		"quick.brown.fox",         // nobody: dropped
		"quick.orange.new.rabbit", // nobody: "*" matches exactly one word
	} {
		if err := publisher.Publish(ctx, topic, Sighting{Topic: topic}); err != nil {
			return err
		}
	}
	// 3 copies for Q1, 5 for Q2.
	if _, err := exampleutil.Receive(ctx, got, 8, "the sightings"); err != nil {
		return err
	}

	// By default an event nobody subscribed to is dropped; a publisher that
	// needs a subscriber says so, and learns that there was none.
	err = publisher.Publish(ctx, "quick.brown.fox", Sighting{}, bus.WithRequireSubscriber(true))
	if !errors.Is(err, bus.ErrUnroutable) {
		return errors.New("an event nobody subscribed to was not reported")
	}
	ex.Printf("quick.brown.fox, a subscriber required: ErrUnroutable")
	return nil
}
