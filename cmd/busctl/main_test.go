package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/cmd/busctl/internal/store"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
	"go.uber.org/goleak"
)

// TestMain runs busctl itself when the tests start this binary as busctl
// (BUSCTL_TEST_MAIN=1): the CLI tests run it as a separate process, with
// its arguments, standard streams and exit code, as a user would.
func TestMain(m *testing.M) {
	if os.Getenv("BUSCTL_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:]))
	}
	goleak.VerifyTestMain(m)
}

type result struct {
	code           int
	stdout, stderr string
}

// busctl runs the busctl binary with args, the store in dir, and stdin.
func busctl(t *testing.T, dir, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "BUSCTL_TEST_MAIN=1", "BUSCTL_STORE="+filepath.Join(dir, "store.db"))
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("busctl %q: %v", args, err)
	}
	return r
}

func want(t *testing.T, r result, code int, args ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("busctl %q: exit %d, want %d\nstdout: %s\nstderr: %s", args, r.code, code, r.stdout, r.stderr)
	}
}

func jsonOut[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
	}
	return v
}

// exportLines are failed messages in busctl's export format.
func exportLines(n int, source string) string {
	names := middleware.DefaultHeaderNames
	var b strings.Builder
	for i := range n {
		errText := fmt.Sprintf("charge order %d: card declined", i)
		if i%3 == 0 {
			errText = fmt.Sprintf("charge order %d: gateway timeout after %d ms", i, 100+i)
		}
		m := transport.Message{ID: fmt.Sprintf("m-%d", i), ContentType: "application/json", Body: []byte(fmt.Sprintf(`{"order":%d}`, i)),
			Headers: transport.Headers{names.SourceQueue: source, names.ErrorDetails: errText, names.ErrorRetries: int32(6), names.MessageType: "shop.ChargeCard"}}
		wm, _ := store.EncodeMessage(&m)
		line, _ := json.Marshal(store.ExportRecord{ErrorQueue: "error", FailedAt: time.Date(2026, 12, 3, 9, 0, i, 0, time.UTC), Message: wm})
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// TestCLIStore runs the commands that need only the store (--no-ingest)
// and the memory broker.
func TestCLIStore(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("BUSLINE_AMQP_URL", "")

	r := busctl(t, dir, "", "--help")
	want(t, r, 0)
	if !strings.Contains(r.stdout, "Exit codes") || !strings.Contains(r.stdout, "Examples:") {
		t.Errorf("--help lacks exit codes or examples:\n%s", r.stdout)
	}
	want(t, busctl(t, dir, "", "completion", "bash"), 0, "completion")
	want(t, busctl(t, dir, "", "nosuch"), 2, "nosuch")
	want(t, busctl(t, dir, "", "failed", "list"), 2, "failed list without a broker")
	want(t, busctl(t, dir, "", "--no-ingest", "failed", "retry", "--dry-run"), 2, "retry without a selection")

	in := exportLines(9, "billing")
	r = busctl(t, dir, in, "failed", "import", "-o", "json")
	want(t, r, 0, "import")
	if got := jsonOut[map[string]int](t, r); got["read"] != 9 || got["stored"] != 9 {
		t.Errorf("import = %v", got)
	}
	r = busctl(t, dir, "", "--no-ingest", "failed", "list", "-o", "json", "--error", "DECLINED")
	want(t, r, 0, "list")
	if list := jsonOut[[]store.Failed](t, r); len(list) != 6 || list[0].ID != "m-1" || list[0].SourceQueue != "billing" || list[0].Retries != 6 {
		t.Errorf("list = %+v", list)
	}
	r = busctl(t, dir, "", "--no-ingest", "failed", "list", "--since", "2026-12-03T09:00:05Z")
	want(t, r, 0, "list --since")
	if n := strings.Count(r.stdout, "\n"); n != 1+4 {
		t.Errorf("list --since shows %d lines:\n%s", n, r.stdout)
	}
	r = busctl(t, dir, "", "--no-ingest", "failed", "groups", "-o", "json")
	want(t, r, 0, "groups")
	groups := jsonOut[[]store.Group](t, r)
	if len(groups) != 2 || groups[0].Count != 6 || groups[1].Kind != "charge order #: gateway timeout after # ms" {
		t.Fatalf("groups = %+v", groups)
	}
	r = busctl(t, dir, "", "--no-ingest", "failed", "show", "m-4")
	want(t, r, 0, "show")
	if !strings.Contains(r.stdout, "charge order 4: card declined") || !strings.Contains(r.stdout, "\"order\": 4") {
		t.Errorf("show:\n%s", r.stdout)
	}
	want(t, busctl(t, dir, "", "--no-ingest", "failed", "show", "nope"), 3, "show nope")

	r = busctl(t, dir, "", "--no-ingest", "failed", "export")
	want(t, r, 0, "export")
	if r.stdout != in {
		t.Errorf("export differs from what was imported:\n%s\nwant\n%s", r.stdout, in)
	}

	// The memory broker of this process has no queue "billing": the retry
	// keeps the messages and says why, with exit code 4.
	r = busctl(t, dir, "", "--memory", "failed", "retry", "--group", groups[1].ID)
	want(t, r, 4, "retry to a missing queue")
	if !strings.Contains(r.stdout, "retried 0 messages") || !strings.Contains(r.stdout, "unroutable") {
		t.Errorf("retry to a missing queue:\n%s", r.stdout)
	}

	want(t, busctl(t, dir, "", "--no-ingest", "failed", "delete", "--group", groups[1].ID), 2, "delete a group without --yes")
	r = busctl(t, dir, "", "--no-ingest", "failed", "delete", "--group", groups[1].ID, "--yes")
	want(t, r, 0, "delete --yes")
	r = busctl(t, dir, "", "--no-ingest", "failed", "list", "-o", "json")
	if list := jsonOut[[]store.Failed](t, r); len(list) != 6 {
		t.Errorf("after delete: %d messages, want 6", len(list))
	}

	r = busctl(t, dir, `{"order":1}`, "send", "orders", "--type", "shop.PlaceOrder", "--id", "x-1", "-H", "PikaBus.CorrelationId=c-9", "--dry-run")
	want(t, r, 0, "send --dry-run")
	var sent struct {
		Exchange   string            `json:"exchange"`
		RoutingKey string            `json:"routing_key"`
		Message    store.WireMessage `json:"message"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sent); err != nil {
		t.Fatal(err, r.stdout)
	}
	if sent.Exchange != "direct" || sent.RoutingKey != "orders" || sent.Message.ID != "x-1" || string(sent.Message.Headers["PikaBus.CorrelationId"]) != `"c-9"` ||
		string(sent.Message.Headers["PikaBus.MessageType"]) != `"shop.PlaceOrder"` || *sent.Message.Body != `{"order":1}` {
		t.Errorf("send --dry-run = %s", r.stdout)
	}

	// A password in the URL is never printed.
	r = busctl(t, dir, "", "-amqp", "amqp://ops:hunter2secret@127.0.0.1:1/", "queues")
	want(t, r, 1, "queues on a closed port")
	if strings.Contains(r.stdout+r.stderr, "hunter2secret") {
		t.Errorf("the password is printed:\n%s", r.stderr)
	}
}

// TestCLIRabbitMQ runs ingest, groups, queues, retry and send against
// RabbitMQ.
func TestCLIRabbitMQ(t *testing.T) {
	url := os.Getenv("BUSLINE_AMQP_URL")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("BUSLINE_AMQP_URL is not set, and CI=true")
		}
		t.Skip("BUSLINE_AMQP_URL is not set (make test starts a RabbitMQ node)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tr, err := amqp.DialNoDelay(ctx, url, amqp.Options{ConnectionName: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	suffix := fmt.Sprint(time.Now().UnixNano())
	source, errQ := "busctl-cli-billing-"+suffix, "busctl-cli-error-"+suffix
	for _, q := range []transport.Queue{{Name: source, Type: transport.Quorum}, {Name: errQ, Type: transport.Classic}} {
		if err := tr.Declare(ctx, transport.Topology{Queue: q}); err != nil {
			t.Fatal(err)
		}
		defer tr.DeleteQueue(context.Background(), q.Name)
	}
	var outs []transport.Outgoing
	for _, line := range strings.Split(strings.TrimSpace(exportLines(30, source)), "\n") {
		var rec store.ExportRecord
		json.Unmarshal([]byte(line), &rec)
		m, err := rec.Message.Message()
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, transport.Outgoing{Exchange: transport.Direct, RoutingKey: errQ, Mandatory: true, Message: m})
	}
	if err := tr.Dispatch(ctx, outs...); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	eq := "--error-queue=" + errQ
	r := busctl(t, dir, "", eq, "failed", "groups", "-o", "json")
	want(t, r, 0, "groups")
	groups := jsonOut[[]store.Group](t, r)
	if len(groups) != 2 || groups[0].Count != 20 || groups[0].SourceQueue != source {
		t.Fatalf("groups = %+v", groups)
	}
	if info, _ := tr.Inspect(ctx, errQ); info.Messages != 0 {
		t.Errorf("the error queue holds %d after the ingest", info.Messages)
	}

	r = busctl(t, dir, "", eq, "queues", "-o", "json")
	want(t, r, 0, "queues")
	rows := jsonOut[[]QueueRow](t, r)
	if len(rows) != 2 || rows[0].Name != errQ || rows[0].Type != "classic" || rows[1].Name != source || rows[1].Type != "quorum" || rows[1].Failed != 30 {
		t.Errorf("queues = %+v", rows)
	}

	r = busctl(t, dir, "", eq, "failed", "retry", "--group", groups[0].ID, "-o", "json")
	want(t, r, 0, "retry")
	if res := jsonOut[store.RetryResult](t, r); len(res.Retried) != 20 || len(res.Left) != 0 {
		t.Errorf("retry = %+v", res)
	}
	d, ok, err := tr.Get(ctx, source)
	if err != nil || !ok {
		t.Fatalf("nothing on %s after the retry: %v", source, err)
	}
	if _, has := d.Headers[middleware.DefaultHeaderNames.ErrorRetries]; has {
		t.Error("the retried message keeps its ErrorRetries")
	}
	d.Nack(true)

	r = busctl(t, dir, `{"order":99}`, "send", source, "--type", "shop.ChargeCard")
	want(t, r, 0, "send")
	want(t, busctl(t, dir, "", "send", "busctl-no-such-queue-"+suffix), 1, "send to a missing queue")
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := tr.Inspect(ctx, source)
		if err == nil && info.Messages == 21 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d messages, want 21 (%v)", source, info.Messages, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r = busctl(t, dir, "", eq, "failed", "list", "-o", "json")
	if list := jsonOut[[]store.Failed](t, r); len(list) != 10 {
		t.Errorf("%d failed messages left, want 10", len(list))
	}
}

// TestCLIRetryInterrupted interrupts a bulk retry (SIGINT, as Ctrl-C) once
// its first batch is on the source queue: whatever the moment, every
// message is either on the source queue or still in the store, never both
// and never neither.
func TestCLIRetryInterrupted(t *testing.T) {
	url := os.Getenv("BUSLINE_AMQP_URL")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("BUSLINE_AMQP_URL is not set, and CI=true")
		}
		t.Skip("BUSLINE_AMQP_URL is not set (make test starts a RabbitMQ node)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tr, err := amqp.DialNoDelay(ctx, url, amqp.Options{ConnectionName: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	suffix := fmt.Sprint(time.Now().UnixNano())
	source, errQ := "busctl-int-billing-"+suffix, "busctl-int-error-"+suffix
	for _, q := range []transport.Queue{{Name: source, Type: transport.Classic}, {Name: errQ, Type: transport.Classic}} {
		if err := tr.Declare(ctx, transport.Topology{Queue: q}); err != nil {
			t.Fatal(err)
		}
		defer tr.DeleteQueue(context.Background(), q.Name)
	}
	const total = 4 * store.RetryBatch
	names := middleware.DefaultHeaderNames
	var outs []transport.Outgoing
	for i := range total {
		outs = append(outs, transport.Outgoing{Exchange: transport.Direct, RoutingKey: errQ, Mandatory: true, Message: transport.Message{
			ID: fmt.Sprintf("i-%d", i), Body: []byte("{}"),
			Headers: transport.Headers{names.SourceQueue: source, names.ErrorDetails: "boom"},
		}})
	}
	if err := tr.Dispatch(ctx, outs...); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	eq := "--error-queue=" + errQ
	want(t, busctl(t, dir, "", eq, "failed", "ingest"), 0, "ingest")

	cmd := exec.CommandContext(ctx, os.Args[0], eq, "failed", "retry", "--all")
	cmd.Env = append(os.Environ(), "BUSCTL_TEST_MAIN=1", "BUSCTL_STORE="+filepath.Join(dir, "store.db"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var werr error
	for done := false; !done; {
		select {
		case werr = <-exited:
			done = true
		case <-time.After(10 * time.Millisecond):
			if info, err := tr.Inspect(ctx, source); err == nil && info.Messages > 0 {
				cmd.Process.Signal(os.Interrupt)
				werr = <-exited
				done = true
			}
		}
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		code = ee.ExitCode()
	}
	if code != 0 && code != exitInterrupted {
		t.Fatalf("retry exit %d:\n%s", code, out.String())
	}
	r := busctl(t, dir, "", "--no-ingest", "failed", "list", "--limit", "0", "-o", "json")
	stored := len(jsonOut[[]store.Failed](t, r))
	info, err := tr.Inspect(ctx, source)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exit %d: %d on %s, %d still stored", code, info.Messages, source, stored)
	if info.Messages+stored != total {
		t.Errorf("%d on the source queue + %d in the store != %d: messages lost or duplicated\n%s", info.Messages, stored, total, out.String())
	}
	if info.Messages%store.RetryBatch != 0 {
		t.Errorf("%d on the source queue: the interrupted batch did not complete", info.Messages)
	}
}
