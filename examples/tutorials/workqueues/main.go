package main

import (
	"context"
	"fmt"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/examples/internal/exampleutil"
)

// Task is a piece of work that takes Duration to do.
type Task struct {
	Name     string
	Duration time.Duration
}

func main() { exampleutil.Main("workqueues", run) }

func run(ctx context.Context, ex *exampleutil.Env) error {
	type result struct{ worker, task string }
	done := make(chan result, 5)
	for _, name := range []string{"worker 1", "worker 2"} {
		// Same queue, "tasks", for both; one task at a time each, and no
		// more than that one in hand (fair dispatch).
		w, err := bus.New(ex.Transport, "tasks", ex.Options(bus.Options{Concurrency: 1, Prefetch: 1}))
		if err != nil {
			return err
		}
		if err := bus.Handle(w, func(ctx context.Context, t Task) error {
			ex.Printf("%s: %s started", name, t.Name)
			select {
			case <-time.After(t.Duration): // the work
			case <-ctx.Done():
				return ctx.Err() // shutting down: the task goes back to the queue
			}
			ex.Printf("%s: %s done", name, t.Name)
			done <- result{name, t.Name}
			return nil
		}); err != nil {
			return err
		}
		if err := w.Start(ctx); err != nil {
			return err
		}
		defer w.Shutdown(context.WithoutCancel(ctx))
	}

	client, err := bus.New(ex.Transport, "", ex.Options(bus.Options{}))
	if err != nil {
		return err
	}
	tasks := []Task{{"long task", 1500 * time.Millisecond}}
	for i := 1; i <= 4; i++ {
		tasks = append(tasks, Task{fmt.Sprintf("short task %d", i), 100 * time.Millisecond})
	}
	for _, t := range tasks {
		if err := client.Send(ctx, "tasks", t); err != nil {
			return err
		}
	}
	ex.Printf("sent %d tasks", len(tasks))

	results, err := exampleutil.Receive(ctx, done, len(tasks), "the tasks")
	if err != nil {
		return err
	}
	count := map[string]int{}
	for _, r := range results {
		count[r.worker]++
	}
	ex.Printf("all %d tasks done: worker 1 did %d, worker 2 did %d", len(results), count["worker 1"], count["worker 2"])
	return nil
}
