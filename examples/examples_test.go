package examples_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/busline/busline/internal/brokertest"
)

// An example program, with the lines its output must contain.
type example struct {
	path   string   // the package, relative to this directory
	memory bool     // on the memory broker only
	want   []string // substrings of lines the output must contain
}

var examples = []example{
	{path: "demo", memory: true, want: []string{
		"shipping  [orders.#]    got OrderPlaced order-1",
		"billing   [orders.*.eu] got OrderPlaced order-1",
		"shop      got the reply OrderAccepted order-1",
		"orders    got PaymentReminder order-1",
		"shop      got StockLevel: 7 teapots",
		"FAILED to charge order-2, attempt 3",
		"error queue holds OrderPlaced from billing after 3 deliveries: payment gateway down",
		"replayed 1 message(s) to billing",
		"billing   [orders.*.eu] got OrderPlaced order-2: card charged",
	}},
	{path: "quickstart", memory: true, want: []string{"orders: placing order 42", "billing: invoicing order 42"}},
	{path: "pikabus/basic", want: []string{
		"received command {Hello:world! Reply:true}",
		"received event {Hello:world! Reply:true}",
		"received command {Hello:back at you Reply:false}",
		"done",
	}},
	{path: "pikabus/consumer", want: []string{"processing order-5", "handled all 5 orders", "stopped", "done"}},
	{path: "pikabus/publish", want: []string{
		"subscriber received {Hello:world!}",
		"published to otherTopic with a subscriber required: ErrUnroutable",
		"done",
	}},
	{path: "pikabus/send", want: []string{
		`received "now"`,
		`received "2 seconds later"`,
		"send to noSuchQueue: ErrUnroutable",
		"done",
	}},
	{path: "pikabus/transaction", want: []string{
		"inside the transaction: 0 messages in the queue",
		`received "sent"`, `received "published"`, `received "deferred 1s"`,
		"rolled back: payment declined",
		`received "after the rollback"`,
		"done",
	}},
	{path: "pikabus/errors", want: []string{
		"order-1: attempt after 2 retries: gateway down",
		"order-2: no card: a permanent failure",
		`error queue: {"OrderID":"order-1","Card":"4242"} from `,
		"payments after 3 deliveries: payment gateway unavailable",
		"payments after 1 deliveries: order order-2 has no card",
		"replayed charge-order-1 to ",
		"order-1: charged",
		"done",
	}},
	{path: "pikabus/http", want: []string{
		"POST /greetings?hello=client-3: 202 Accepted payload published",
		"consumer received {Hello:client-3}",
		"done",
	}},
	{path: "tutorials/helloworld", want: []string{` [x] Received "Hello World!"`, "done"}},
	{path: "tutorials/workqueues", want: []string{"long task done", "short task 4 done", "all 5 tasks done", "done"}},
	{path: "tutorials/pubsub", want: []string{
		"[disk-writer] disk 91% full", "[screen-printer] disk 91% full", "both subscribers got all 3 lines", "done",
	}},
	{path: "tutorials/routing", want: []string{
		"[console] info: service started", "[console] error: disk full", "[error-archive] error: disk full", "done",
	}},
	{path: "tutorials/topics", want: []string{
		"Q1 [*.orange.*] got quick.orange.fox",
		"Q2 [*.*.rabbit lazy.#] got lazy.pink.rabbit",
		"Q2 [*.*.rabbit lazy.#] got lazy.orange.new.rabbit",
		"quick.brown.fox, a subscriber required: ErrUnroutable",
		"done",
	}},
	{path: "tutorials/rpc", want: []string{"Got fib(30) = 832040", "Got fib(90) = 2880067194370816120", "done"}},
}

// TestExamples builds every example once and runs it on the memory broker
// and on RabbitMQ.
func TestExamples(t *testing.T) {
	bin := build(t)
	for _, ex := range examples {
		t.Run(ex.path+"/memory", func(t *testing.T) {
			t.Parallel()
			out := runExample(t, bin, ex.path, 0)
			checkOutput(t, out, ex.want)
		})
		if ex.memory {
			continue
		}
		t.Run(ex.path+"/rabbitmq", func(t *testing.T) {
			t.Parallel()
			url := brokertest.URL(t)
			brokertest.Shared(t) // not while another package's test restarts the broker
			out := runExample(t, bin, ex.path, 0, "-amqp", url)
			checkOutput(t, out, ex.want)
			if strings.Contains(out, "on the memory broker") {
				t.Errorf("ran on the memory broker, not RabbitMQ")
			}
		})
	}
}

// TestExampleTimeout checks that an example that cannot complete in time
// fails with status 1 and says so.
func TestExampleTimeout(t *testing.T) {
	bin := build(t)
	out := runExample(t, bin, "tutorials/workqueues", 1, "-timeout", "300ms")
	if !strings.Contains(out, "the scenario did not complete within 300ms") {
		t.Errorf("output does not say the scenario did not complete:\n%s", out)
	}
}

// built is the directory of the example binaries, which TestMain removes.
var built struct {
	once sync.Once
	dir  string
	err  error
	out  []byte
}

// build builds every example into a directory, once per test binary.
func build(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "busline-examples-")
		if built.err != nil {
			return
		}
		args := []string{"build", "-o", built.dir + string(filepath.Separator)}
		if race {
			args = append(args, "-race")
		}
		// go test puts its own GOROOT/bin first on the PATH of its tests.
		built.out, built.err = exec.Command("go", append(args, "./...")...).CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("go build: %v\n%s", built.err, built.out)
	}
	return built.dir
}

// runExample runs the example at path with args and returns its output
// (stdout and stderr), failing the test unless it exits with wantStatus.
func runExample(t *testing.T, bin, path string, wantStatus int, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, filepath.Base(path)), args...)
	// The examples read BUSLINE_AMQP_URL, which `make test` sets: only -amqp
	// chooses RabbitMQ here.
	// A binary built with -race sleeps a second at exit unless told not to.
	cmd.Env = append(os.Environ(), "BUSLINE_AMQP_URL=", "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s %s: %v after %v", path, strings.Join(args, " "), cmd.ProcessState, time.Since(start).Round(time.Millisecond))
	status := cmd.ProcessState.ExitCode()
	if status != wantStatus {
		t.Fatalf("exit status %d (%v), want %d; output:\n%s", status, err, wantStatus, out.String())
	}
	return out.String()
}

func checkOutput(t *testing.T, out string, want []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}
