package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/busline/busline/cmd/busctl/internal/console"
	"github.com/busline/busline/cmd/busctl/internal/store"
	"github.com/spf13/cobra"
)

func newServeCmd(g *globals) *cobra.Command {
	var listen, token, user string
	var queues []string
	var demo bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the web console",
		Long: `serve runs the web console: an overview of the queues (refreshed every 5 s),
the failed-message groups and lists with filters, each message's detail,
retry and delete of one, a selection, a group or a filter after a
confirmation page, and a JSON API under /api/ (queues, groups, messages,
messages/{id}, POST retry and delete). It keeps taking new failures from the
error queue into the store while it runs.

It listens on 127.0.0.1:8080 by default. To listen on another interface it
needs --token (or $BUSCTL_TOKEN: open the console once with ?token=…, or send
Authorization: Bearer …) or --user with $BUSCTL_PASSWORD (basic auth). Every
form and API call that changes something carries a CSRF token.

--demo (with --memory) starts three demo services on the memory broker whose
handlers fail the first time they see a message, so that the console has
something to show and a retry succeeds.`,
		Example: `  busctl serve
  busctl serve --listen 0.0.0.0:8080 --token "$(openssl rand -hex 16)"
  busctl serve --memory --demo --store /tmp/demo.db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if token == "" {
				token = os.Getenv("BUSCTL_TOKEN")
			}
			password := os.Getenv("BUSCTL_PASSWORD")
			if user != "" && password == "" {
				return withCode(exitUsage, errors.New("--user needs the password in $BUSCTL_PASSWORD"))
			}
			host, _, err := net.SplitHostPort(listen)
			if err != nil {
				return withCode(exitUsage, fmt.Errorf("--listen %q: %w", listen, err))
			}
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) && token == "" && user == "" {
				return withCode(exitUsage, fmt.Errorf("--listen %s is reachable from other machines: give --token or --user", listen))
			}
			if demo && !g.memory {
				return withCode(exitUsage, errors.New("--demo runs on the memory broker: add --memory"))
			}
			s, err := g.openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			b, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			if demo {
				stop, names, err := startDemo(ctx, b.t)
				if err != nil {
					return err
				}
				defer stop()
				queues = append(queues, names...)
			}
			c, err := console.New(console.Options{
				Store: s, Dispatcher: b.t, Token: token, User: user, Password: password, Logger: log,
				Queues: func(ctx context.Context) ([]console.Queue, error) {
					rows, err := queueRows(ctx, s, b, g.errorQueue, queues)
					out := make([]console.Queue, len(rows))
					for i, r := range rows {
						out[i] = console.Queue(r)
					}
					return out, err
				},
			})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
			ingestDone := make(chan struct{})
			go func() {
				defer close(ingestDone)
				follow(ctx, s, b, g.errorQueue, log)
			}()
			fmt.Fprintf(os.Stderr, "busctl: console on http://%s/ (store %s)\n", ln.Addr(), g.storePath)
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err = <-errc:
			case <-ctx.Done():
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err = srv.Shutdown(sctx)
				cancel()
			}
			<-ingestDone
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&listen, "listen", "127.0.0.1:8080", "address to listen on")
	fl.StringVar(&token, "token", "", "require this token (default $BUSCTL_TOKEN)")
	fl.StringVar(&user, "user", "", "require basic auth as this user, with the password in $BUSCTL_PASSWORD")
	fl.StringArrayVar(&queues, "queue", nil, "a queue to show on the overview, repeatable (source queues of failed messages are shown anyway)")
	fl.BoolVar(&demo, "demo", false, "run demo services on the memory broker (with --memory)")
	return cmd
}

// follow ingests the error queue until ctx ends, starting again 5 s after
// a failure (the error queue missing, a lost connection).
func follow(ctx context.Context, s *store.Store, b *broker, queue string, log *slog.Logger) {
	for {
		n, err := s.Ingest(ctx, b.t, queue, store.IngestOptions{Follow: true})
		if ctx.Err() != nil {
			return
		}
		log.Warn("busctl: ingesting the error queue stopped; starting again in 5s", "queue", queue, "ingested", n, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}
