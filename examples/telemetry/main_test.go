package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/internal/brokertest"
)

// TestExample builds the example and runs it on the memory broker and on
// RabbitMQ: the order's trace spans the three services, with the retry
// and the reply, and the scrape shows the counters and gauges.
func TestExample(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "telemetry")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	want := []string{
		"billing  charging order-1: payment gateway timeout",
		"orders   order-1 billed",
		"The order's trace (10 spans), from OpenTelemetry's stdout exporter:",
		"  POST /orders [shop, server]",
		"    send PikaBusDirect:",
		"orders [shop, producer]",
		"orders [orders, consumer]",
		"orders.placed [orders, producer]",
		"billing [billing, consumer]",
		"ERROR +busline.retry_scheduled",
		"orders [billing, producer]",
		"orders.placed [orders, client]",
		`busline_retries_total{busline_message_type="OrderPlaced",error_type="_OTHER"`,
		"busline_connection_up{",
		"busline_queue_messages{",
		`messaging_client_sent_messages_total{messaging_destination_name="PikaBusTopic:`,
		`messaging_client_consumed_messages_total{error_type="_OTHER"`,
		"messaging_process_duration_seconds_count{",
		"done",
	}
	t.Run("memory", func(t *testing.T) {
		out := runExample(t, bin)
		check(t, out, want)
	})
	t.Run("rabbitmq", func(t *testing.T) {
		url := brokertest.URL(t)
		out := runExample(t, bin, "-amqp", url)
		check(t, out, append(want, "telemetry on the rabbitmq broker"))
	})
}

func runExample(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "BUSLINE_AMQP_URL=") // only -amqp chooses RabbitMQ
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("telemetry %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func check(t *testing.T, out string, want []string) {
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
