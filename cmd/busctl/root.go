package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/cmd/busctl/internal/store"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
	"github.com/spf13/cobra"
)

// globals are the flags every command takes.
type globals struct {
	amqpURL      string
	memory       bool
	storePath    string
	errorQueue   string
	headerPrefix string
	output       string
	noIngest     bool
	noProgress   bool
}

func (g *globals) names() middleware.HeaderNames {
	if g.headerPrefix == "" || g.headerPrefix == "PikaBus" {
		return middleware.DefaultHeaderNames
	}
	return middleware.NewHeaderNames(g.headerPrefix)
}

func (g *globals) json() bool { return g.output == "json" }

const rootLong = `busctl operates busline services on RabbitMQ: it shows their queues and
the messages that failed (the error queue), groups failures by cause, sends
them back to the queues they failed in once the cause is fixed, deletes,
exports and imports them, sends messages by hand, and serves a web console
over the same (busctl serve).

Failed messages are moved from the error queue into a store of busctl's own
(an SQLite file, --store), as NServiceBus's ServiceControl does: each is
stored, then acked on the queue. Browsing the store neither reorders nor
redelivers anything on the broker, and listing, grouping and filtering
100,000 failed messages are queries. Every command that reads failed
messages first moves what is new on the error queue into the store (unless
--no-ingest); busctl serve does so continuously. Run one store per error
queue: messages taken in by a store are retried or deleted through it.

Connection: --amqp URL (also -amqp URL), or the BUSLINE_AMQP_URL variable.
Passwords are never printed. --memory runs against an in-process memory
broker instead (empty but for busctl serve --demo), for demos and tests.

Exit codes: 0 done; 1 failed; 2 bad usage; 3 a message or queue asked for
does not exist; 4 done in part (some messages could not be retried: see the
output); 130 interrupted (a bulk operation stops after the batch under way,
so that nothing is lost or sent twice).`

const rootExample = `  export BUSLINE_AMQP_URL=amqp://guest:guest@localhost:5672/
  busctl queues orders billing
  busctl failed groups
  busctl failed list --queue billing --error "card declined" --since 2h
  busctl failed show 3f2a…
  busctl failed retry --group 9c1e5b2a7d40
  busctl failed export > failed.jsonl
  busctl send orders --type shop.PlaceOrder --file order.json --dry-run
  busctl serve --listen 127.0.0.1:8080`

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "busctl",
		Short:         "Operate busline services: queues, failed messages, a web console",
		Long:          rootLong,
		Example:       rootExample,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if g.output != "table" && g.output != "json" {
				return fmt.Errorf("invalid argument %q for --output: want table or json", g.output)
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.amqpURL, "amqp", os.Getenv("BUSLINE_AMQP_URL"), "RabbitMQ URL (default $BUSLINE_AMQP_URL)")
	pf.BoolVar(&g.memory, "memory", false, "use an in-process memory broker instead of RabbitMQ")
	pf.StringVar(&g.storePath, "store", defaultStore(), "the failed-message store, an SQLite file (default $BUSCTL_STORE or ~/.local/share/busctl/store.db)")
	pf.StringVar(&g.errorQueue, "error-queue", middleware.DefaultErrorQueue, "the error queue")
	pf.StringVar(&g.headerPrefix, "header-prefix", "PikaBus", "prefix of the services' header names")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	pf.BoolVar(&g.noIngest, "no-ingest", false, "read the store as it is, without taking new failures from the error queue")
	pf.BoolVar(&g.noProgress, "no-progress", false, "no progress bars (they are shown only on a terminal)")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (usage: see %s --help)", err, c.CommandPath())
	})

	root.AddCommand(newQueuesCmd(g), newFailedCmd(g), newSendCmd(g, false), newSendCmd(g, true), newServeCmd(g))
	return root
}

func defaultStore() string {
	if p := os.Getenv("BUSCTL_STORE"); p != "" {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "busctl", "store.db")
	}
	return "busctl.db"
}

// broker is a connected transport and what can be asked of it.
type broker struct {
	t   transport.Transport
	url string // empty for memory

	mu    sync.Mutex
	types map[string]typeSeen
}

func (b *broker) Close() error { return b.t.Close() }

// connect dials RabbitMQ (or makes a memory broker). The transport is one
// without the delay levels: busctl defers nothing, and needs no configure
// permission on them.
func (g *globals) connect(ctx context.Context) (*broker, error) {
	if g.memory {
		return &broker{t: memory.New(memory.Options{Name: "busctl"})}, nil
	}
	if g.amqpURL == "" {
		return nil, withCode(exitUsage, errors.New("no broker: give --amqp URL or set BUSLINE_AMQP_URL (or --memory)"))
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	t, err := amqp.DialNoDelay(dctx, g.amqpURL, amqp.Options{ConnectionName: "busctl"})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", redact(g.amqpURL), err)
	}
	return &broker{t: t, url: g.amqpURL}, nil
}

// redact returns u without its password, for messages.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "the broker"
	}
	return p.Redacted()
}

func (g *globals) openStore() (*store.Store, error) {
	s, err := store.Open(g.storePath, store.Options{Headers: g.names()})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ingest moves what is new on the error queue into s, with a progress bar.
func (g *globals) ingest(ctx context.Context, s *store.Store, b *broker) error {
	if g.noIngest {
		return nil
	}
	bar := g.progress("ingesting " + g.errorQueue)
	n, err := s.Ingest(ctx, b.t, g.errorQueue, store.IngestOptions{Progress: func(done, remaining int) { bar.set(done, done+remaining) }})
	bar.done()
	if err != nil {
		return err
	}
	if n > 0 && !g.json() {
		fmt.Fprintf(os.Stderr, "busctl: took %d new failed messages from %q into the store\n", n, g.errorQueue)
	}
	return nil
}

// session opens the store, connects (unless store-only and --no-ingest),
// and ingests.
func (g *globals) session(ctx context.Context, needBroker bool) (*store.Store, *broker, func(), error) {
	s, err := g.openStore()
	if err != nil {
		return nil, nil, nil, err
	}
	if !needBroker && g.noIngest {
		return s, nil, func() { s.Close() }, nil
	}
	b, err := g.connect(ctx)
	if err != nil {
		s.Close()
		return nil, nil, nil, err
	}
	closeAll := func() { b.Close(); s.Close() }
	if err := g.ingest(ctx, s, b); err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	return s, b, closeAll, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// clip shortens s to n runes for a table cell.
func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\t", " ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

// parseTime reads a filter's time; empty is none.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := store.ParseTime(s)
	if err != nil {
		return t, withCode(exitUsage, err)
	}
	return t, nil
}
