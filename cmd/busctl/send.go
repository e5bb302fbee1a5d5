package main

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/busline/busline/cmd/busctl/internal/store"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
	"github.com/spf13/cobra"
)

func newSendCmd(g *globals, publish bool) *cobra.Command {
	var file, typ, id, contentType string
	var headers []string
	var jsonl, dryRun bool
	use, short, example := "send QUEUE", "Send a message to an endpoint's queue (direct exchange)", `  busctl send orders --type shop.PlaceOrder --file order.json
  echo '{"ID":"42"}' | busctl send orders --type shop.PlaceOrder --header PikaBus.CorrelationId=abc
  busctl send billing --jsonl --file failed.jsonl --dry-run   # the messages of an export, as they are`
	if publish {
		use, short, example = "publish TOPIC", "Publish a message to a topic (topic exchange)", `  busctl publish orders.placed --type shop.OrderPlaced --file event.json`
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `, for tests and manual fixes. The body comes
from --file or standard input. busctl stamps the PikaBus headers a service
would (MessageId, MessageType, ContentType, TimeSent, Intent), which
--header NAME=VALUE may override. With --jsonl each input line is a message
in the form of busctl failed export (or a bare "message" object), sent as
it is. --dry-run prints what would be sent and sends nothing. The message is
mandatory: one no queue takes is an error.`,
		Example: example,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := cmd.InOrStdin()
			if file != "" && file != "-" {
				fh, err := os.Open(file)
				if err != nil {
					return err
				}
				defer fh.Close()
				in = fh
			}
			ex := transport.Direct
			if publish {
				ex = transport.Topic
			}
			var msgs []transport.Message
			var err error
			if jsonl {
				msgs, err = readJSONL(in)
			} else {
				var m transport.Message
				m, err = newMessage(g.names(), in, typ, id, contentType, headers, publish)
				msgs = []transport.Message{m}
			}
			if err != nil {
				return withCode(exitUsage, err)
			}
			outs := make([]transport.Outgoing, len(msgs))
			for i, m := range msgs {
				outs[i] = transport.Outgoing{Exchange: ex, RoutingKey: args[0], Mandatory: true, Message: m}
				if err := outs[i].Validate(); err != nil {
					return withCode(exitUsage, fmt.Errorf("message %d: %w", i+1, err))
				}
			}
			if dryRun {
				for _, o := range outs {
					wm, err := store.EncodeMessage(&o.Message)
					if err != nil {
						return err
					}
					if err := writeJSON(cmd.OutOrStdout(), map[string]any{"exchange": o.Exchange.String(), "routing_key": o.RoutingKey, "message": wm}); err != nil {
						return err
					}
				}
				fmt.Fprintf(os.Stderr, "busctl: dry run: %d messages not sent\n", len(outs))
				return nil
			}
			b, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			bar := g.progress("sending")
			for i := 0; i < len(outs); i += 500 {
				batch := outs[i:min(i+500, len(outs))]
				if err := b.t.Dispatch(cmd.Context(), batch...); err != nil {
					bar.done()
					return fmt.Errorf("sent %d of %d messages: %w", i, len(outs), err)
				}
				bar.set(i+len(batch), len(outs))
			}
			bar.done()
			if g.json() {
				return writeJSON(cmd.OutOrStdout(), map[string]int{"sent": len(outs)})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "sent %d messages to %s %q\n", len(outs), ex, args[0])
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&file, "file", "f", "", "read the body (or, with --jsonl, the messages) from this file instead of standard input")
	fl.StringVarP(&typ, "type", "t", "", "the message type (MessageType header and type property)")
	fl.StringVar(&id, "id", "", "the message id (default: a new one)")
	fl.StringVar(&contentType, "content-type", "application/json", "the body's content type")
	fl.StringArrayVarP(&headers, "header", "H", nil, "a header NAME=VALUE (string), repeatable")
	fl.BoolVar(&jsonl, "jsonl", false, "the input is JSON Lines of messages (busctl failed export)")
	fl.BoolVar(&dryRun, "dry-run", false, "print what would be sent, send nothing")
	return cmd
}

func newMessage(names middleware.HeaderNames, in io.Reader, typ, id, contentType string, headers []string, event bool) (transport.Message, error) {
	body, err := io.ReadAll(in)
	if err != nil {
		return transport.Message{}, err
	}
	if id == "" {
		id = newID()
	}
	now := time.Now().UTC()
	intent := "command"
	if event {
		intent = "event"
	}
	m := transport.Message{
		ID: id, Type: typ, ContentType: contentType, ContentEncoding: "utf-8", Timestamp: now, Body: body,
		Headers: transport.Headers{
			names.MessageID: id, names.ContentType: contentType, names.ContentEncoding: "utf-8",
			names.TimeSent: middleware.FormatTime(now), names.Intent: intent,
		},
	}
	if typ != "" {
		m.Headers[names.MessageType] = typ
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return m, fmt.Errorf("--header %q: want NAME=VALUE", h)
		}
		m.Headers[k] = v
	}
	return m, nil
}

func readJSONL(in io.Reader) ([]transport.Message, error) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	var out []transport.Message
	for line := 1; sc.Scan(); line++ {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var rec struct {
			Message *store.WireMessage `json:"message"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		wm := rec.Message
		if wm == nil {
			wm = new(store.WireMessage)
			if err := json.Unmarshal(sc.Bytes(), wm); err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
		}
		m, err := wm.Message()
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

func newID() string {
	var b [16]byte
	if _, err := randRead(b[:]); err != nil {
		return fmt.Sprintf("busctl-%d", time.Now().UnixNano())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

var randRead = rand.Read
