// Command interop checks, against a live tomodachi service (svc.py next to
// it, run from a tomodachi checkout), that busline endpoints and tomodachi
// services talk on one RabbitMQ broker: events both ways on amq.topic in
// tomodachi's JSON and protobuf envelopes, a routing key prefix, and the
// names tomodachi gives its competing and non-competing queues.
//
// It is a manual check, not part of make test: CI cannot install tomodachi
// (no PyPI). scripts/tomodachi-interop.sh builds and runs it; it starts the
// Python service itself once its own endpoints are bound, prints each check
// as PASS or FAIL, and exits 1 if one failed.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/protocodec/orderspb"
	"github.com/busline/busline/tomodachi"
)

// OrderCreated goes to the tomodachi service in its JSON envelope.
type OrderCreated struct {
	OrderID string `json:"order_id"`
}

// StockReserved comes back from it.
type StockReserved struct {
	OrderID  string `json:"order_id"`
	Reserved bool   `json:"reserved"`
}

// pyLine is a line the Python service logs.
type pyLine struct {
	Event       string          `json:"event"`
	RoutingKey  string          `json:"routing_key"`
	Data        json.RawMessage `json:"data"`
	MessageUUID string          `json:"message_uuid"`
	OrderID     string          `json:"order_id"`
	TotalCents  int64           `json:"total_cents"`
	Skus        []string        `json:"skus"`
	UUID        string          `json:"uuid"`
}

func main() {
	url := flag.String("amqp", os.Getenv("BUSLINE_AMQP_URL"), "the broker")
	python := flag.String("python", "python3", "the interpreter that runs svc.py")
	svc := flag.String("svc", "svc.py", "the tomodachi service")
	flag.Parse()
	failed := run(*url, *python, *svc)
	if failed > 0 {
		fmt.Printf("tomodachi-interop: %d checks failed\n", failed)
		os.Exit(1)
	}
	fmt.Println("tomodachi-interop: every check passed")
}

func run(url, python, svc string) (failed int) {
	check := func(ok bool, what string, args ...any) {
		status := "PASS"
		if !ok {
			status, failed = "FAIL", failed+1
		}
		fmt.Printf("%s %s\n", status, fmt.Sprintf(what, args...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tr, err := amqp.Dial(ctx, url, amqp.Options{})
	if err != nil {
		check(false, "dial: %v", err)
		return
	}
	defer tr.Close()

	var r [4]byte
	_, _ = rand.Read(r[:])
	prefix := "interop-" + hex.EncodeToString(r[:]) + "."
	quiet := slog.New(slog.DiscardHandler)
	me := tomodachi.NewService("busline-interop")
	jsonEnv, protoEnv := tomodachi.JSONEnvelope{Service: me}, tomodachi.ProtobufEnvelope{Service: me}
	goJSON, err := bus.New(tr, "go.json", bus.Options{QueuePrefix: prefix, Logger: quiet,
		Exchanges: []bus.Exchange{{Name: tomodachi.DefaultExchange, TopicPrefix: prefix, Codec: jsonEnv,
			Subscriptions: []string{"hello", "stock.reserved"}}}})
	if err != nil {
		check(false, "bus.New: %v", err)
		return
	}
	goProto, err := bus.New(tr, "go.proto", bus.Options{QueuePrefix: prefix, PerInstance: true, Logger: quiet,
		Exchanges: []bus.Exchange{{Name: tomodachi.DefaultExchange, TopicPrefix: prefix, Codec: protoEnv,
			Subscriptions: []string{"stock.proto"}}}})
	if err != nil {
		check(false, "bus.New: %v", err)
		return
	}
	hello := make(chan tomodachi.Envelope, 1)
	reserved := make(chan StockReserved, 1)
	protoReserved := make(chan *orderspb.StockReserved, 1)
	_ = bus.Handle(goJSON, func(_ context.Context, e tomodachi.Envelope) error { hello <- e; return nil }, bus.WithMessageType("hello"))
	_ = bus.Handle(goJSON, func(_ context.Context, s StockReserved) error { reserved <- s; return nil }, bus.WithMessageType("stock.reserved"))
	_ = bus.Handle(goProto, func(_ context.Context, s *orderspb.StockReserved) error { protoReserved <- s; return nil }, bus.WithMessageType("stock.proto"))
	for _, b := range []*bus.Bus{goJSON, goProto} {
		if err := b.Start(ctx); err != nil {
			check(false, "Start: %v", err)
			return
		}
		defer b.Close()
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		_ = tr.DeleteQueue(dctx, goJSON.Queue())
		_ = tr.DeleteQueue(dctx, goJSON.ErrorQueue())
	}()

	lines, stop, err := startPython(python, svc, url, prefix)
	if err != nil {
		check(false, "starting the tomodachi service: %v", err)
		return
	}
	defer stop()
	next := func(event string) (pyLine, bool) {
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return pyLine{}, false
				}
				if l.Event == event {
					return l, true
				}
			case <-ctx.Done():
				return pyLine{}, false
			}
		}
	}
	started, ok := next("started")
	check(ok, "the tomodachi service started (uuid %s)", started.UUID)
	if !ok {
		return
	}

	select {
	case e := <-hello:
		check(e.Service.Name == "tomodachi-interop" && e.Service.UUID == started.UUID && e.Metadata.Topic == "hello" &&
			e.Metadata.ProtocolVersion == tomodachi.JSONProtocolVersion && strings.Contains(string(e.Data), `"py-1"`),
			"tomodachi -> busline, JSON envelope: an event it published on start, read as an Envelope: %+v %s", e.Metadata, e.Data)
	case <-ctx.Done():
		check(false, "tomodachi -> busline, JSON envelope: the event it published on start did not arrive")
	}

	err = goJSON.Publish(ctx, "order.created", OrderCreated{OrderID: "go-1"}, bus.WithExchange(tomodachi.DefaultExchange), bus.WithRequireSubscriber(true))
	check(err == nil, "busline -> tomodachi, JSON envelope: Publish order.created reached a queue (%v)", err)
	if l, ok := next("json"); ok {
		check(string(l.Data) == `{"order_id": "go-1"}` && strings.HasPrefix(l.MessageUUID, me.UUID+".") && l.RoutingKey == "order.created",
			"tomodachi's handler got data %s, message_uuid %s, routing key %q", l.Data, l.MessageUUID, l.RoutingKey)
	} else {
		check(false, "tomodachi's handler of order.created was not called")
	}
	select {
	case s := <-reserved:
		check(s == StockReserved{OrderID: "go-1", Reserved: true}, "tomodachi -> busline, JSON envelope: its reply %+v", s)
	case <-ctx.Done():
		check(false, "tomodachi -> busline: no stock.reserved")
	}

	want := &orderspb.OrderPlaced{OrderId: "go-2", TotalCents: 4200, Skus: []string{"tea", "cups"}}
	err = goProto.Publish(ctx, "order.placed", want, bus.WithExchange(tomodachi.DefaultExchange), bus.WithRequireSubscriber(true))
	check(err == nil, "busline -> tomodachi, protobuf envelope: Publish order.placed reached a queue (%v)", err)
	if l, ok := next("proto"); ok {
		check(l.OrderID == "go-2" && l.TotalCents == 4200 && slices.Equal(l.Skus, want.Skus),
			"tomodachi's handler (proto_class OrderPlaced) got %s, %d cents, %v", l.OrderID, l.TotalCents, l.Skus)
	} else {
		check(false, "tomodachi's protobuf handler of order.placed was not called")
	}
	select {
	case s := <-protoReserved:
		check(proto.Equal(s, &orderspb.StockReserved{OrderId: "go-2", Complete: true}), "tomodachi -> busline, protobuf envelope: its reply %v", s)
	case <-ctx.Done():
		check(false, "tomodachi -> busline: no stock.proto")
	}

	// The queues tomodachi declared have the names QueueName computes.
	competing := tomodachi.QueueName("order.created", "on_order_created", started.UUID, true, prefix)
	own := tomodachi.QueueName("order.placed", "on_order_placed", started.UUID, false, prefix)
	for _, q := range []string{competing, own} {
		info, err := tr.Inspect(ctx, q)
		check(err == nil && info.Consumers == 1, "tomodachi's queue %s exists with its consumer (%v)", q, err)
	}
	stop()
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	for _, q := range []string{competing, own} {
		_ = tr.DeleteQueue(dctx, q) // tomodachi's x-expires is a day
	}
	return failed
}

// startPython runs the tomodachi service and returns its log lines.
func startPython(python, svc, url, prefix string) (<-chan pyLine, func(), error) {
	u, err := parseAMQP(url)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(python, "-m", "tomodachi", "run", "--production", svc)
	cmd.Env = append(os.Environ(), "AMQP_HOST="+u.host, "AMQP_PORT="+u.port, "INTEROP_PREFIX="+prefix)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	lines := make(chan pyLine, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var l pyLine
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Event != "" {
				fmt.Printf("  tomodachi: %s\n", sc.Text())
				lines <- l
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	return lines, stop, nil
}

type hostPort struct{ host, port string }

// parseAMQP takes the host and port out of an amqp:// URL (the service
// uses guest/guest, tomodachi's default).
func parseAMQP(url string) (hostPort, error) {
	rest, ok := strings.CutPrefix(url, "amqp://")
	if !ok {
		return hostPort{}, fmt.Errorf("not an amqp:// URL")
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	rest, _, _ = strings.Cut(rest, "/")
	host, port, ok := strings.Cut(rest, ":")
	if !ok {
		port = "5672"
	}
	return hostPort{host, port}, nil
}
