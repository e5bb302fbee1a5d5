package exampleutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

var (
	amqpURL = flag.String("amqp", os.Getenv("BUSLINE_AMQP_URL"),
		"RabbitMQ URL, such as amqp://guest:guest@localhost:5672/ (default $BUSLINE_AMQP_URL; empty: the in-memory broker)")
	timeout = flag.Duration("timeout", 30*time.Second, "give up if the scenario has not completed after this long (0: no limit)")
	verbose = flag.Bool("v", false, "log what the bus does (retries, the error queue) to stderr")
)

// Env is what an example runs with.
type Env struct {
	// Transport is the connection to the broker: a memory.Transport or an
	// amqp.Transport. Both implement every optional capability of package
	// transport (Delayer, Getter, Inspector, QueueDeleter, ...).
	Transport transport.Transport
	// Broker is "memory" or "rabbitmq".
	Broker string
	// Prefix is prepended to the queue names and topics of the example's
	// endpoints by Options: empty on the memory broker, unique to the run
	// on RabbitMQ.
	Prefix string
	// Logger is nil (silent) unless -v was given.
	Logger *slog.Logger

	start  time.Time
	mu     sync.Mutex
	queues []string // declared by the example's endpoints, deleted at the end
}

// Main parses the flags, connects to the broker, runs the example and exits:
// with status 0 if run returned nil, 1 otherwise. run's context ends when
// -timeout passes or the process is interrupted.
func Main(name string, run func(ctx context.Context, ex *Env) error) {
	flag.Parse()
	os.Exit(main(name, run))
}

func main(name string, run func(ctx context.Context, ex *Env) error) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}

	ex := &Env{start: time.Now()}
	if *verbose {
		ex.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if *amqpURL == "" {
		ex.Broker = "memory"
		ex.Transport = memory.New(memory.Options{Logger: ex.Logger})
	} else {
		ex.Broker = "rabbitmq"
		ex.Prefix = "busline-example." + name + "." + runID() + "."
		t, err := amqp.Dial(ctx, *amqpURL, amqp.Options{ConnectionName: "busline-example-" + name, Logger: ex.Logger})
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			return 1
		}
		ex.Transport = t
	}
	defer ex.Transport.Close()
	ex.Printf("%s on the %s broker", name, ex.Broker)

	err := run(ctx, ex)
	ex.cleanup()
	switch {
	case err == nil:
		ex.Printf("done")
		return 0
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		fmt.Fprintf(os.Stderr, "%s: the scenario did not complete within %v: %v\n", name, *timeout, err)
	case ctx.Err() != nil:
		fmt.Fprintf(os.Stderr, "%s: interrupted: %v\n", name, err)
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	}
	return 1
}

// Options returns opts with the example's prefix on queue names and topics,
// and, if opts has none, the example's logger. Every endpoint of an example
// is made with it.
func (ex *Env) Options(opts bus.Options) bus.Options {
	opts.QueuePrefix = ex.Prefix + opts.QueuePrefix
	opts.TopicPrefix = ex.Prefix + opts.TopicPrefix
	if opts.Logger == nil {
		opts.Logger = ex.Logger
	}
	errorQueue := opts.ErrorQueue
	if errorQueue == "" {
		errorQueue = "error"
	}
	onEvent := opts.OnNotice
	opts.OnNotice = func(e bus.Notice) {
		if e.Kind == bus.Started {
			ex.remember(e.Queue, opts.QueuePrefix+errorQueue)
		}
		if onEvent != nil {
			onEvent(e)
		}
	}
	return opts
}

// Printf prints a line of the example's story, with the time since it
// started.
func (ex *Env) Printf(format string, args ...any) {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	fmt.Printf("%5.2fs  %s\n", time.Since(ex.start).Seconds(), fmt.Sprintf(format, args...))
}

// Receive waits for n values from ch and returns them, or fails when ctx
// ends first, saying what it was waiting for.
func Receive[T any](ctx context.Context, ch <-chan T, n int, what string) ([]T, error) {
	got := make([]T, 0, n)
	for len(got) < n {
		select {
		case v := <-ch:
			got = append(got, v)
		case <-ctx.Done():
			return got, fmt.Errorf("waiting for %s: got %d of %d: %w", what, len(got), n, ctx.Err())
		}
	}
	return got, nil
}

func (ex *Env) remember(queues ...string) {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	ex.queues = append(ex.queues, queues...)
}

// cleanup deletes the queues the example's endpoints declared on RabbitMQ.
func (ex *Env) cleanup() {
	d, ok := ex.Transport.(transport.QueueDeleter)
	if ex.Prefix == "" || !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ex.mu.Lock()
	queues := ex.queues
	ex.mu.Unlock()
	for _, q := range queues {
		if err := d.DeleteQueue(ctx, q); err != nil {
			fmt.Fprintf(os.Stderr, "cleaning up: %v\n", err)
		}
	}
}

func runID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
