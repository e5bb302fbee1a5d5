package watermillbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
	"github.com/busline/busline/watermillbus"
)

// bridgeFeatures are what the bridge declares to Watermill's universal
// tests, the same over every busline transport:
//
//   - ConsumerGroups: a group is a queue of its own bound under the topic;
//   - Persistent: messages wait in their queue for a subscriber that comes
//     later or comes back;
//   - GuaranteedOrder with a single subscriber: a queue is FIFO and a
//     subscription hands over one message at a time; competing
//     subscribers share a queue and each sees its share in order, but the
//     suite's ordered test reads them as one stream;
//   - not ExactlyOnceDelivery: a message whose subscriber stops before
//     acking it is delivered again (at least once);
//   - not NewSubscriberReceivesOldMessages: a queue, once consumed, is
//     empty, unlike a Kafka log;
//   - not ContextPreserved: the publisher's context does not travel;
//   - ForceShort: the suite's message counts shrink (5,000 and 10,000 to
//     100, 1,000 to 100, 100 to 50), so that it stays within a CI budget
//     on two cores;
//   - no RestartServiceCommand: TestReconnect skips; package amqp's own
//     recovery tests restart the broker.
var bridgeFeatures = tests.Features{
	ConsumerGroups:                      true,
	Persistent:                          true,
	GuaranteedOrder:                     true,
	GuaranteedOrderWithSingleSubscriber: true,
	ForceShort:                          true,
}

// bridge returns a constructor of the universal tests: a publisher and a
// subscriber over a transport newTransport makes for each call.
func bridge(newTransport func(t *testing.T) transport.Transport, queueType transport.QueueType) (tests.PubSubConstructor, tests.ConsumerGroupPubSubConstructor) {
	group := func(t *testing.T, consumerGroup string) (message.Publisher, message.Subscriber) {
		tr := newTransport(t)
		pub, err := watermillbus.NewPublisher(tr, watermillbus.PublisherOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sub, err := watermillbus.NewSubscriber(tr, watermillbus.SubscriberOptions{ConsumerGroup: consumerGroup, QueueType: queueType})
		if err != nil {
			t.Fatal(err)
		}
		return pub, sub
	}
	return func(t *testing.T) (message.Publisher, message.Subscriber) { return group(t, "") }, group
}

func TestUniversalMemory(t *testing.T) {
	broker := memory.NewBroker()
	newTransport := func(t *testing.T) transport.Transport {
		tr := memory.New(memory.Options{Broker: broker})
		t.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	single, groups := bridge(newTransport, "")
	tests.TestPubSub(t, bridgeFeatures, single, groups)
}

func TestUniversalRabbitMQ(t *testing.T) {
	url := brokertest.URL(t)
	newTransport := func(t *testing.T) transport.Transport {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		tr, err := amqp.Dial(ctx, url, amqp.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	// Classic queues: the suite declares a few hundred, and a quorum
	// queue takes RabbitMQ longer to create.
	single, groups := bridge(newTransport, transport.Classic)
	tests.TestPubSub(t, bridgeFeatures, single, groups)
}
