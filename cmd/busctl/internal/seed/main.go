// Command seed fills an error queue with failed messages as busline's
// ErrorQueue stage leaves them, for busctl's measurements (bench.sh) and
// demos: it declares the source queues and the error queue, then sends
// -n messages spread over the groups below.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// groups: a tenth of the messages are billing's declined cards (10,000 of
// 100,000), the rest shared by three other causes.
var groups = []struct {
	queue, typ, err string
	weight          int
}{
	{"billing", "shop.ChargeCard", `charge order %d: card "%d" declined`, 1},
	{"billing", "shop.ChargeCard", `charge order %d: payment gateway timeout after %d ms`, 3},
	{"shipping", "shop.ShipOrder", `ship order %d: no address for customer %d`, 3},
	{"orders", "shop.PlaceOrder", `place order %d: stock service returned %d`, 3},
}

func main() {
	url := flag.String("amqp", "", "RabbitMQ URL")
	n := flag.Int("n", 100000, "messages")
	flag.Parse()
	ctx := context.Background()
	t, err := amqp.DialNoDelay(ctx, *url, amqp.Options{ConnectionName: "busctl seed"})
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()
	for _, q := range []string{"billing", "shipping", "orders"} {
		if err := t.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: q, Type: transport.Quorum}}); err != nil {
			log.Fatal(err)
		}
	}
	if err := t.Declare(ctx, transport.Topology{Queue: transport.Queue{Name: "error", Type: transport.Classic, Shared: true}}); err != nil {
		log.Fatal(err)
	}
	names := middleware.DefaultHeaderNames
	start := time.Now()
	var batch []transport.Outgoing
	for i := range *n {
		g := groups[0]
		if i%10 != 0 {
			g = groups[1+i%3]
		}
		id := fmt.Sprintf("seed-%07d", i)
		msg := transport.Message{
			ID: id, Type: g.typ, ContentType: "application/json", ContentEncoding: "utf-8", Timestamp: time.Now(),
			Headers: transport.Headers{
				names.MessageID: id, names.MessageType: g.typ, names.SourceQueue: g.queue,
				names.ErrorDetails: fmt.Sprintf(g.err, i, 1000+i%9000) + "\n\tat handler.go:42", names.ErrorRetries: int32(6),
				names.TimeSent: middleware.FormatTime(time.Now()), names.ContentType: "application/json",
			},
			Body: fmt.Appendf(nil, `{"order":%d,"customer":"c-%d","lines":[{"sku":"A-1","qty":2}],"note":"%0200d"}`, i, i%977, 0),
		}
		batch = append(batch, transport.Outgoing{Exchange: transport.Direct, RoutingKey: "error", Mandatory: true, Message: msg})
		if len(batch) == 1000 || i == *n-1 {
			if err := t.Dispatch(ctx, batch...); err != nil {
				log.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	fmt.Printf("seed: %d failed messages on \"error\" in %.1fs\n", *n, time.Since(start).Seconds())
}
