package bench

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/busline/busline/internal/benchloop"
)

// RouterPayload encodes to 256 bytes of JSON, as the root module's
// bus BenchmarkBus payload.
type RouterPayload struct {
	ID   string
	Data string
}

func routerPayload() RouterPayload {
	p := RouterPayload{ID: "0123456789abcdef"}
	b, _ := json.Marshal(p)
	p.Data = strings.Repeat("x", 256-len(b))
	if b, _ := json.Marshal(p); len(b) != 256 {
		panic(len(b))
	}
	return p
}

// window bounds the messages sent and not yet handled, as in BenchmarkBus.
const window = 256

// BenchmarkRouter is bus BenchmarkBus's trip through Watermill's Router
// over its GoChannel pub/sub, with the Retry and PoisonQueue middleware
// (and Recoverer, as the bus's pipeline recovers panics), the same payload
// marshalled and unmarshalled as JSON, the same window.
func BenchmarkRouter(b *testing.B) { benchRouter(b, json.Marshal, json.Unmarshal) }

// benchRouter runs BenchmarkRouter with the given JSON functions.
func benchRouter(b *testing.B, marshal func(any) ([]byte, error), unmarshal func([]byte, any) error) {
	logger := watermill.NopLogger{}
	pubSub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1024}, logger)
	defer pubSub.Close()
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		b.Fatal(err)
	}
	poison, err := wmiddleware.PoisonQueue(pubSub, "poison")
	if err != nil {
		b.Fatal(err)
	}
	router.AddMiddleware(poison, wmiddleware.Retry{MaxRetries: 5, InitialInterval: 2 * time.Second}.Middleware, wmiddleware.Recoverer)
	w := benchloop.New(window)
	router.AddConsumerHandler("bench", "bench", pubSub, func(msg *message.Message) error {
		var m RouterPayload
		if err := unmarshal(msg.Payload, &m); err != nil {
			return err
		}
		w.Handled()
		return nil
	})
	go router.Run(context.Background())
	defer router.Close()
	<-router.Running()

	msg := routerPayload()
	b.ReportAllocs()
	b.SetBytes(256)
	w.Run(b, func() error {
		payload, err := marshal(msg)
		if err != nil {
			return err
		}
		return pubSub.Publish("bench", message.NewMessage(watermill.NewUUID(), payload))
	})
}
