package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/busline/busline/bus"
	"github.com/busline/busline/examples/internal/exampleutil"
)

var (
	listen   = flag.String("listen", "127.0.0.1:0", "address to serve HTTP on")
	requests = flag.Int("requests", 3, "requests to make to the service before stopping it (0: serve until interrupted)")
)

// Greeting is the event.
type Greeting struct {
	Hello string `json:"hello"`
}

func main() { exampleutil.Main("http", run) }

func run(ctx context.Context, ex *exampleutil.Env) error {
	// The consumer in the background.
	b, err := bus.New(ex.Transport, "myQueue", ex.Options(bus.Options{Subscriptions: []string{"myTopic"}}))
	if err != nil {
		return err
	}
	received := make(chan Greeting, 16)
	if err := bus.Handle(b, func(ctx context.Context, g Greeting) error {
		ex.Printf("consumer received %+v", g)
		select {
		case received <- g:
		default: // serving until interrupted: nobody counts
		}
		return nil
	}); err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		return err
	}
	defer b.Shutdown(context.WithoutCancel(ctx))

	// The web service.
	mux := http.NewServeMux()
	mux.HandleFunc("POST /greetings", func(w http.ResponseWriter, r *http.Request) {
		g := Greeting{Hello: r.URL.Query().Get("hello")}
		if err := b.Publish(r.Context(), "myTopic", g); err != nil {
			http.Error(w, "not published: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintln(w, "payload published")
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	ex.Printf("serving on http://%s", ln.Addr())

	if *requests > 0 {
		err = requestSelf(ctx, ex, "http://"+ln.Addr().String(), received)
	} else {
		<-ctx.Done() // SIGINT, SIGTERM or -timeout
	}

	// Stop taking requests first, then the Bus (deferred).
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		return serr
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}

// requestSelf plays the service's clients.
func requestSelf(ctx context.Context, ex *exampleutil.Env, base string, received <-chan Greeting) error {
	for i := 1; i <= *requests; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/greetings?hello=client-%d", base, i), nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ex.Printf("POST /greetings?hello=client-%d: %s %s", i, resp.Status, bytes.TrimSpace(body))
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("request %d: %s", i, resp.Status)
		}
	}
	_, err := exampleutil.Receive(ctx, received, *requests, "the published greetings")
	return err
}
