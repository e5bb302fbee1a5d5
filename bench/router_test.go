package bench

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/busline/busline/internal/cputime"
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
	var handled atomic.Int64
	done := make(chan struct{})
	slots := make(chan struct{}, window)
	var n int64
	router.AddConsumerHandler("bench", "bench", pubSub, func(msg *message.Message) error {
		var m RouterPayload
		if err := unmarshal(msg.Payload, &m); err != nil {
			return err
		}
		<-slots
		if handled.Add(1) == n {
			close(done)
		}
		return nil
	})
	go router.Run(context.Background())
	defer router.Close()
	<-router.Running()

	msg := routerPayload()
	n = int64(b.N)
	b.ReportAllocs()
	b.SetBytes(256)
	b.ResetTimer()
	cpu := cputime.Used()
	for range b.N {
		slots <- struct{}{}
		payload, err := marshal(msg)
		if err != nil {
			b.Fatal(err)
		}
		if err := pubSub.Publish("bench", message.NewMessage(watermill.NewUUID(), payload)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("handled %d of %d", handled.Load(), b.N)
	}
	b.StopTimer()
	if used := cputime.Used() - cpu; used > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
