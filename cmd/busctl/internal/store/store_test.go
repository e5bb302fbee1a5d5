package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/cmd/busctl/internal/store"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var names = middleware.DefaultHeaderNames

// failed returns a message as the ErrorQueue stage leaves it.
func failed(id, source, errText string, retries int32) transport.Message {
	return transport.Message{
		ID: id, Type: "shop.ChargeCard", ContentType: "application/json", ContentEncoding: "utf-8",
		Headers: transport.Headers{
			names.MessageID: id, names.MessageType: "shop.ChargeCard",
			names.SourceQueue: source, names.ErrorDetails: errText + "\nstack line 1\nstack line 2",
			names.ErrorRetries: retries, names.TimeSent: "2026-12-03T09:00:00.000000Z",
			"custom": transport.Headers{"n": int64(1) << 40, "when": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		},
		Body: []byte(`{"order":"` + id + `"}`),
	}
}

func setup(t *testing.T, queues ...string) (*memory.Transport, *store.Store) {
	return setupBatch(t, 0, queues...)
}

func setupBatch(t *testing.T, batch int, queues ...string) (*memory.Transport, *store.Store) {
	t.Helper()
	tr := memory.New(memory.Options{})
	t.Cleanup(func() { tr.Close() })
	for _, q := range append([]string{"error"}, queues...) {
		if err := tr.Declare(context.Background(), transport.Topology{Queue: transport.Queue{Name: q, Type: transport.Classic}}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := store.Open(":memory:", store.Options{RetryBatch: batch})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return tr, s
}

func fill(t *testing.T, tr transport.Transport, msgs ...transport.Message) {
	t.Helper()
	var outs []transport.Outgoing
	for _, m := range msgs {
		outs = append(outs, transport.Outgoing{Exchange: transport.Direct, RoutingKey: "error", Mandatory: true, Message: m})
	}
	if err := tr.Dispatch(context.Background(), outs...); err != nil {
		t.Fatal(err)
	}
}

func TestIngestGroupRetry(t *testing.T) {
	ctx := context.Background()
	tr, s := setup(t, "billing", "shipping")
	var msgs []transport.Message
	for i := range 30 {
		msgs = append(msgs, failed(fmt.Sprintf("b-%d", i), "billing", fmt.Sprintf(`charge order %d: card "%d" declined`, i, 4000+i), 5))
	}
	for i := range 5 {
		msgs = append(msgs, failed(fmt.Sprintf("s-%d", i), "shipping", "no address for customer 0xdeadbeef", 5))
	}
	msgs = append(msgs, failed("gone-1", "gone", "whatever", 1))
	fill(t, tr, msgs...)

	n, err := s.Ingest(ctx, tr, "error", store.IngestOptions{Batch: 7})
	if err != nil || n != len(msgs) {
		t.Fatalf("Ingest = %d, %v; want %d", n, err, len(msgs))
	}
	if info, _ := tr.Inspect(ctx, "error"); info.Messages != 0 {
		t.Fatalf("error queue holds %d after ingest", info.Messages)
	}
	// Ingesting again finds nothing, and a redelivered copy is not stored twice.
	fill(t, tr, msgs[0])
	if n, err := s.Ingest(ctx, tr, "error", store.IngestOptions{}); err != nil || n != 1 {
		t.Fatalf("second Ingest = %d, %v", n, err)
	}
	if c, _ := s.Count(ctx, store.Filter{}); c != len(msgs) {
		t.Fatalf("Count = %d, want %d", c, len(msgs))
	}

	groups, err := s.Groups(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 3 || groups[0].Count != 30 || groups[0].SourceQueue != "billing" || groups[0].Kind != `charge order #: card "…" declined` {
		t.Fatalf("groups = %+v", groups)
	}
	if groups[1].Kind != "no address for customer #" {
		t.Fatalf("group 2 kind = %q", groups[1].Kind)
	}

	got, err := s.Get(ctx, "b-3")
	if err != nil {
		t.Fatal(err)
	}
	if got.ErrorLine() != `charge order 3: card "4003" declined` || got.Retries != 5 || got.Sent.IsZero() {
		t.Fatalf("Get = %+v", got)
	}
	m, err := got.Message.Message()
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := msgs[3].Normalized(); fmt.Sprint(m) != fmt.Sprint(want) {
		t.Fatalf("stored message\n%v\nwant\n%v", m, want)
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(nope) = %v", err)
	}

	// Ingest keeps queue order within a batch only (its handlers run
	// concurrently), so the page is checked for what it holds.
	list, err := s.List(ctx, store.Filter{Error: "DECLINED", SourceQueue: "billing"}, 10, 5)
	if err != nil || len(list) != 5 || list[0].SourceQueue != "billing" || !strings.Contains(list[0].Error, "declined") {
		t.Fatalf("List = %v, %v", list, err)
	}

	var calls int
	res, err := s.Retry(ctx, tr, store.Filter{Group: groups[0].ID}, func(done, total int) { calls++ })
	if err != nil || len(res.Retried) != 30 || len(res.Left) != 0 {
		t.Fatalf("Retry = %+v, %v", res, err)
	}
	if info, _ := tr.Inspect(ctx, "billing"); info.Messages != 30 {
		t.Fatalf("billing holds %d, want 30", info.Messages)
	}
	d, ok, err := tr.Get(ctx, "billing")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	d.Ack()
	for _, h := range []string{names.ErrorRetries, names.ErrorDetails, names.SourceQueue} {
		if _, ok := d.Headers[h]; ok {
			t.Errorf("retried message keeps %s", h)
		}
	}
	// Ingest keeps queue order within a batch only: any billing message.
	if id, _ := d.Headers[names.MessageID].(string); !strings.HasPrefix(id, "b-") || string(d.Body) != `{"order":"`+id+`"}` {
		t.Errorf("retried message = %v %s", d.Headers, d.Body)
	}

	// A message whose source queue is gone stays, with the reason.
	res, err = s.Retry(ctx, tr, store.Filter{}, nil)
	if err != nil || len(res.Retried) != 5 || len(res.Left) != 1 || !strings.Contains(res.Left[0].Reason, "unroutable") {
		t.Fatalf("Retry all = %+v, %v", res, err)
	}
	if c, _ := s.Count(ctx, store.Filter{}); c != 1 {
		t.Fatalf("Count after retries = %d, want 1", c)
	}
}

func TestRetryInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const batch = 10
	tr, s := setupBatch(t, batch, "billing")
	var msgs []transport.Message
	for i := range 3*batch + 5 {
		msgs = append(msgs, failed(fmt.Sprintf("b-%d", i), "billing", "boom", 5))
	}
	fill(t, tr, msgs...)
	if _, err := s.Ingest(ctx, tr, "error", store.IngestOptions{}); err != nil {
		t.Fatal(err)
	}
	// Interrupted after the first batch: that batch is on billing and gone
	// from the store; the rest is in the store and not on billing.
	res, err := s.Retry(ctx, tr, store.Filter{}, func(done, total int) { cancel() })
	if !errors.Is(err, context.Canceled) || len(res.Retried) != batch {
		t.Fatalf("Retry = %d retried, %v", len(res.Retried), err)
	}
	info, _ := tr.Inspect(context.Background(), "billing")
	left, _ := s.Count(context.Background(), store.Filter{})
	if info.Messages != batch || left != len(msgs)-batch {
		t.Fatalf("billing holds %d, store %d; want %d and %d", info.Messages, left, batch, len(msgs)-batch)
	}
}

func TestExportImportDelete(t *testing.T) {
	ctx := context.Background()
	tr, s := setup(t)
	fill(t, tr, failed("a", "billing", "x", 1), failed("b", "billing", "y", 2), transport.Message{Body: []byte{0xff, 0}})
	if _, err := s.Ingest(ctx, tr, "error", store.IngestOptions{}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if n, err := s.Export(ctx, &buf, store.Filter{}, nil); err != nil || n != 3 {
		t.Fatalf("Export = %d, %v", n, err)
	}
	s2, err := store.Open(":memory:", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	read, stored, err := s2.Import(ctx, bytes.NewReader(buf.Bytes()), "error", nil)
	if err != nil || read != 3 || stored != 3 {
		t.Fatalf("Import = %d, %d, %v", read, stored, err)
	}
	var again bytes.Buffer
	s2.Export(ctx, &again, store.Filter{}, nil)
	if again.String() != buf.String() {
		t.Fatalf("export of the import differs:\n%s\n%s", buf.String(), again.String())
	}
	if _, _, err := s2.Import(ctx, strings.NewReader("{\"message\":{\"headers\":{\"n\":5}}}\n"), "error", nil); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("Import of an untyped number = %v", err)
	}
	if n, err := s2.Delete(ctx, store.Filter{Refs: []string{"a", "b"}}, nil); err != nil || n != 2 {
		t.Fatalf("Delete = %d, %v", n, err)
	}
	if c, _ := s2.Count(ctx, store.Filter{}); c != 1 {
		t.Fatalf("Count = %d", c)
	}
}

// TestIngestFollowQueueDeleted: a follow ingest whose error queue is
// deleted returns, saying so, instead of waiting for nothing.
func TestIngestFollowQueueDeleted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, s := setup(t)
	fill(t, tr, failed("a", "billing", "x", 1))
	done := make(chan error, 1)
	go func() {
		_, err := s.Ingest(ctx, tr, "error", store.IngestOptions{Follow: true})
		done <- err
	}()
	for {
		if n, _ := s.Count(ctx, store.Filter{}); n == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := tr.DeleteQueue(ctx, "error"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || ctx.Err() != nil {
			t.Fatalf("Ingest = %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Ingest did not return after its queue was deleted")
	}
}
