package main

import (
	"context"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/examples/internal/exampleutil"
)

// Hello is the message. Its message type, written into the MessageType
// header, is "Hello"; the receiver's handler is chosen by it.
type Hello struct{ Text string }

func main() { exampleutil.Main("helloworld", run) }

func run(ctx context.Context, ex *exampleutil.Env) error {
	// The consumer: an endpoint with the queue "hello".
	receiver, err := bus.New(ex.Transport, "hello", ex.Options(bus.Options{}))
	if err != nil {
		return err
	}
	received := make(chan Hello, 1)
	if err := bus.Handle(receiver, func(ctx context.Context, msg Hello) error {
		ex.Printf(" [x] Received %q", msg.Text)
		received <- msg
		return nil // nil acks the message; an error would retry it
	}); err != nil {
		return err
	}
	if err := receiver.Start(ctx); err != nil { // declares the queue, starts consuming
		return err
	}
	defer receiver.Shutdown(context.WithoutCancel(ctx))

	// The producer: a send-only endpoint.
	sender, err := bus.New(ex.Transport, "", ex.Options(bus.Options{}))
	if err != nil {
		return err
	}
	if err := sender.Send(ctx, "hello", Hello{Text: "Hello World!"}); err != nil {
		return err
	}
	ex.Printf(" [x] Sent 'Hello World!'")

	_, err = exampleutil.Receive(ctx, received, 1, "the message")
	return err
}
