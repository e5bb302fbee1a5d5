package console_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/cmd/busctl/internal/console"
	"github.com/busline/busline/cmd/busctl/internal/store"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
	"github.com/chromedp/chromedp"
)

// chromium returns the browser to drive: $BUSLINE_CHROMIUM (which
// scripts/chromium.sh sets), else chromium on the PATH. Without one the
// test skips, or fails when CI=true.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("BUSLINE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium (set BUSLINE_CHROMIUM or run under scripts/chromium.sh), and CI=true")
	}
	t.Skip("no chromium: run under scripts/chromium.sh, which installs it, or set BUSLINE_CHROMIUM")
	return ""
}

// ChargeCard is the test's message.
type ChargeCard struct {
	Order int    `json:"order"`
	Card  string `json:"card"`
}

func (ChargeCard) MessageType() string { return "shop.ChargeCard" }

type env struct {
	t        transport.Transport
	queue    string
	errQueue string
}

func memoryEnv(t *testing.T) env {
	tr := memory.New(memory.Options{})
	t.Cleanup(func() { tr.Close() })
	return env{t: tr, queue: "billing", errQueue: "error"}
}

func rabbitEnv(t *testing.T) env {
	url := os.Getenv("BUSLINE_AMQP_URL")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("BUSLINE_AMQP_URL is not set, and CI=true")
		}
		t.Skip("BUSLINE_AMQP_URL is not set (make test starts a RabbitMQ node)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := amqp.Dial(ctx, url, amqp.Options{ConnectionName: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	e := env{t: tr, queue: "busctl-browser-billing-" + suffix, errQueue: "busctl-browser-error-" + suffix}
	t.Cleanup(func() {
		for _, q := range []string{e.queue, e.errQueue} {
			tr.DeleteQueue(context.Background(), q)
		}
		tr.Close()
	})
	return e
}

func TestBrowserMemory(t *testing.T) { browserFlow(t, memoryEnv(t)) }

func TestBrowserRabbitMQ(t *testing.T) { browserFlow(t, rabbitEnv(t)) }

// browserFlow: a failing handler's message appears in the console, the
// operator opens it, fixes the cause, retries its group, and the message
// is handled.
func browserFlow(t *testing.T, e env) {
	exe := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	s, err := store.Open(":memory:", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var broken atomic.Bool
	broken.Store(true)
	handled := make(chan int, 10)
	b, err := bus.New(e.t, e.queue, bus.Options{ErrorQueue: e.errQueue, Retry: middleware.RetryOptions{MaxRetries: middleware.NoRetries}})
	if err != nil {
		t.Fatal(err)
	}
	bus.Handle(b, func(ctx context.Context, m ChargeCard) error {
		if broken.Load() {
			return bus.Permanent(fmt.Errorf("charge order %d: card %q declined <script>alert(1)</script>", m.Order, m.Card))
		}
		handled <- m.Order
		return nil
	})
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())

	ingestCtx, stopIngest := context.WithCancel(ctx)
	ingested := make(chan struct{})
	go func() {
		defer close(ingested)
		s.Ingest(ingestCtx, e.t, e.errQueue, store.IngestOptions{Follow: true})
	}()
	defer func() { stopIngest(); <-ingested }()

	c, err := console.New(console.Options{
		Store: s, Dispatcher: e.t, Refresh: time.Second,
		Queues: func(ctx context.Context) ([]console.Queue, error) {
			var out []console.Queue
			for _, q := range []string{e.errQueue, e.queue} {
				info, err := e.t.(transport.Inspector).Inspect(ctx, q)
				if err != nil {
					return nil, err
				}
				out = append(out, console.Queue{Name: q, Exists: true, Messages: info.Messages, Consumers: info.Consumers, Type: "?", Role: "endpoint"})
			}
			return out, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	defer srv.Close()

	if err := b.Send(ctx, e.queue, ChargeCard{Order: 42, Card: "4242"}); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	// The first Run starts the browser, tied to the context it is given:
	// bctx, not one of the steps' shorter ones.
	if err := chromedp.Run(bctx); err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}

	step := func(name string, actions ...chromedp.Action) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Run(sctx, actions...); err != nil {
			shot := screenshot(bctx, t)
			t.Fatalf("%s: %v (screenshot %s)", name, err, shot)
		}
	}

	// The overview refreshes by itself until the failure shows.
	step("open the overview", chromedp.Navigate(srv.URL+"/"))
	step("see the failure on the overview", chromedp.WaitVisible(`#top-groups`, chromedp.ByQuery))
	var kind string
	step("open the groups", chromedp.Navigate(srv.URL+"/groups"), chromedp.Text(`#groups tbody tr td:nth-child(3)`, &kind, chromedp.ByQuery))
	if want := `charge order #: card "…" declined <script>alert(#)</script>`; kind != want {
		t.Errorf("group kind = %q, want %q", kind, want)
	}
	step("open the group's messages", chromedp.Click(`#groups tbody tr td:nth-child(3) a`, chromedp.ByQuery), chromedp.WaitVisible(`#messages`, chromedp.ByQuery))
	var errText string
	step("open the message", chromedp.Click(`#messages a.msg`, chromedp.ByQuery), chromedp.WaitVisible(`#error`, chromedp.ByQuery),
		chromedp.Text(`#error`, &errText, chromedp.ByQuery))
	if !strings.Contains(errText, `charge order 42: card "4242" declined <script>`) {
		t.Errorf("error shown = %q", errText)
	}
	var body string
	step("read the body", chromedp.Text(`#body`, &body, chromedp.ByQuery))
	if !strings.Contains(body, "\"order\": 42") {
		t.Errorf("body shown = %q, want indented JSON", body)
	}

	broken.Store(false) // the operator fixes the cause
	var outcome string
	step("retry its group", chromedp.Click(`#retry-group`, chromedp.ByQuery), chromedp.WaitVisible(`#confirm`, chromedp.ByQuery),
		chromedp.Click(`#confirm`, chromedp.ByQuery), chromedp.WaitVisible(`#outcome`, chromedp.ByQuery),
		chromedp.Text(`#outcome`, &outcome, chromedp.ByQuery))
	if !strings.Contains(outcome, "Retried 1 messages") {
		t.Errorf("outcome = %q", outcome)
	}
	select {
	case n := <-handled:
		if n != 42 {
			t.Errorf("handled order %d", n)
		}
	case <-ctx.Done():
		t.Fatal("the retried message was not handled")
	}
	if n, _ := s.Count(ctx, store.Filter{}); n != 0 {
		t.Errorf("store holds %d failed messages after the retry", n)
	}
	var empty string
	step("see no failure left", chromedp.Navigate(srv.URL+"/groups"), chromedp.Text(`main`, &empty, chromedp.ByQuery))
	if !strings.Contains(empty, "No failed messages") {
		t.Errorf("groups page after the retry: %q", empty)
	}
}

// screenshot saves the page as it is, for a failed test, and returns where.
func screenshot(bctx context.Context, t *testing.T) string {
	var png []byte
	ctx, cancel := context.WithTimeout(bctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 90)); err != nil {
		return "none: " + err.Error()
	}
	dir := os.Getenv("BUSCTL_SCREENSHOTS")
	if dir == "" {
		dir = os.TempDir()
	}
	p := filepath.Join(dir, "busctl-"+strings.ReplaceAll(t.Name(), "/", "-")+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		return "none: " + err.Error()
	}
	return p
}
