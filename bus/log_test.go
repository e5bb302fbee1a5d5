package bus_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/busline/busline/bus"
)

// records is a slog.Handler that keeps what it is given.
type records struct {
	mu  sync.Mutex
	got []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, rec.Clone())
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) find(level slog.Level, msg string) (slog.Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.got {
		if rec.Level == level && rec.Message == msg {
			return rec, true
		}
	}
	return slog.Record{}, false
}

func TestLogging(t *testing.T) {
	bubble(t, func(t *testing.T, e *env) {
		var logs records
		b := e.bus("orders", bus.Options{Logger: slog.New(&logs), Unhandled: bus.UnhandledDiscard})
		must(t, bus.Handle(b, func(ctx context.Context, p Ping) error {
			time.Sleep(time.Minute) // the request gives up first
			return b.Reply(ctx, Pong{})
		}))
		e.start(b)
		must(t, b.Send(ctx, "orders", PlaceOrder{}))
		_, err := bus.Request[Pong](after(t, time.Second), b, "orders", Ping{})
		if err == nil {
			t.Fatal("request answered")
		}
		time.Sleep(time.Minute)
		idle()
		must(t, b.Shutdown(ctx))
		for _, want := range []struct {
			level slog.Level
			msg   string
		}{
			{slog.LevelInfo, "endpoint started"},
			{slog.LevelWarn, "no handler for the message type; message discarded"},
			{slog.LevelWarn, "reply to no waiting request dropped (it came too late, or twice)"},
			{slog.LevelInfo, "endpoint stopped"},
		} {
			if _, ok := logs.find(want.level, want.msg); !ok {
				t.Errorf("no %v record %q", want.level, want.msg)
			}
		}
		rec, _ := logs.find(slog.LevelWarn, "no handler for the message type; message discarded")
		var typ string
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "message_type" {
				typ = a.Value.String()
			}
			return true
		})
		if typ != "PlaceOrder" {
			t.Errorf("message_type attribute %q", typ)
		}
	})
}
