package watermillbus_test

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/busline/busline/memory"
	"github.com/busline/busline/watermillbus"
)

// A Watermill Router consuming and publishing through a busline transport:
// here the memory broker; amqp.Dial's transport works the same way.
func Example_router() {
	tr := memory.New(memory.Options{})
	defer tr.Close()
	pub, _ := watermillbus.NewPublisher(tr, watermillbus.PublisherOptions{})
	sub, _ := watermillbus.NewSubscriber(tr, watermillbus.SubscriberOptions{ConsumerGroup: "billing"})
	defer sub.Close()

	router, _ := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	done := make(chan struct{})
	router.AddConsumerHandler("bill", "orders.placed", sub, func(m *message.Message) error {
		fmt.Printf("billing %s for %s\n", m.Payload, m.Metadata.Get("customer"))
		close(done)
		return nil
	})
	go func() { _ = router.Run(context.Background()) }()
	<-router.Running()

	m := message.NewMessage(watermill.NewUUID(), []byte("order 42"))
	m.Metadata.Set("customer", "ada")
	if err := pub.Publish("orders.placed", m); err != nil {
		fmt.Println(err)
	}
	<-done
	_ = router.Close()
	// Output: billing order 42 for ada
}
