// Workqueues is RabbitMQ's second tutorial, "Work Queues": tasks sent to
// one queue are shared by two competing workers, and fair dispatch
// (prefetch 1) gives a new task to whichever worker is free rather than
// strictly taking turns.
//
// # What it shows
//
// Two endpoints on the same queue compete for its messages: each message
// goes to one of them. With Options.Prefetch 1 the broker hands a worker
// its next task only once it has acked the last, so the worker stuck on the
// long task gets no more while the other works through the short ones.
// Messages are persistent and queues durable (quorum queues by default), so
// tasks survive a broker restart; a task is acked only when its handler
// returned nil, so a worker that dies mid-task gives it back to the queue.
//
// The two workers run in one process here; in production they are
// instances of one program, each with the same queue name.
//
// # Running it
//
//	go run ./examples/tutorials/workqueues
//	go run ./examples/tutorials/workqueues -amqp amqp://localhost/
package main
