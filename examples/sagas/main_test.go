package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/saga"
	"github.com/busline/busline/saga/sagatest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var want = []string{
	"payments  charged order-1",
	"payments  card of order-2 does not answer",
	"stock     reserved order-1",
	"stock     reserved order-2",
	"shipping  shipped order-1",
	"shop      order-1 shipped",
	"shop      order-2 cancelled",
	"stock     released order-2",
	"shop      done",
}

// TestHandlers unit-tests the saga's handlers, without a broker.
func TestHandlers(t *testing.T) {
	sg := Fulfilments(30*time.Minute, saga.Options{})
	res, err := sagatest.Handle(sg, nil, PlaceOrder{OrderID: "o1", Card: "4242"})
	if err != nil || len(res.Sent) != 2 || res.Sent[0].Message != (ChargeCard{OrderID: "o1", Card: "4242"}) ||
		res.Sent[1].Message != (ReserveStock{OrderID: "o1"}) || len(res.Timeouts) != 1 ||
		res.Timeouts[0].Delay != 30*time.Minute || res.Timeouts[0].Message != (PaymentOverdue{OrderID: "o1"}) {
		t.Errorf("PlaceOrder: %+v, %v", res, err)
	}
	// Paid, then reserved (or the other way round): ship once.
	res, err = sagatest.Handle(sg, &Fulfilment{Paid: true}, StockReserved{OrderID: "o1"})
	if err != nil || !res.State.Shipping || len(res.Sent) != 1 || res.Sent[0].Message != (ShipOrder{OrderID: "o1"}) || res.Completed {
		t.Errorf("StockReserved after payment: %+v, %v", res, err)
	}
	res, err = sagatest.Handle(sg, &Fulfilment{Paid: true, Reserved: true, Shipping: true}, PaymentReceived{OrderID: "o1"})
	if err != nil || len(res.Sent) != 0 {
		t.Errorf("a second PaymentReceived ships again: %+v, %v", res, err)
	}
	res, err = sagatest.Handle(sg, &Fulfilment{Paid: true, Reserved: true, Shipping: true}, OrderShipped{OrderID: "o1"})
	if err != nil || !res.Completed || len(res.Sent) != 1 || res.Sent[0].Kind != saga.EffectReplyToOriginator ||
		res.Sent[0].Message != (OrderResult{OrderID: "o1", Status: "shipped"}) {
		t.Errorf("OrderShipped: %+v, %v", res, err)
	}
	// The payment timeout: cancels an unpaid order, ignores a paid one.
	res, err = sagatest.Handle(sg, &Fulfilment{Reserved: true}, PaymentOverdue{OrderID: "o1"})
	if err != nil || !res.Completed || len(res.Sent) != 2 || res.Sent[0].Message != (ReleaseStock{OrderID: "o1"}) ||
		res.Sent[1].Message != (OrderResult{OrderID: "o1", Status: "cancelled"}) {
		t.Errorf("PaymentOverdue: %+v, %v", res, err)
	}
	res, err = sagatest.Handle(sg, &Fulfilment{Paid: true}, PaymentOverdue{OrderID: "o1"})
	if err != nil || res.Completed || len(res.Sent) != 0 {
		t.Errorf("PaymentOverdue of a paid order: %+v, %v", res, err)
	}
}

// TestFlow runs the whole example on the memory broker under synctest: the
// 30-minute payment timeout takes no real time, and comes exactly when due.
func TestFlow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		if err := Run(context.Background(), Config{PaymentTimeout: 30 * time.Minute}, &out); err != nil {
			t.Fatal(err)
		}
		check(t, out.String(), append(want, "shop      order-2 cancelled (after 30m0s)", "shop      order-1 shipped (after 0s)"))
	})
}

// TestExample builds the example and runs it as a user would, on the
// memory broker, and on RabbitMQ with PostgreSQL.
func TestExample(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sagas")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Run("memory", func(t *testing.T) {
		out := runExample(t, bin, "-payment-timeout", "1s")
		check(t, out, append(want, "on the memory broker, instances in memory"))
	})
	t.Run("rabbitmq+postgres", func(t *testing.T) {
		url := brokertest.URL(t)
		pg := os.Getenv("BUSLINE_POSTGRES_URL")
		if pg == "" {
			if os.Getenv("CI") == "true" {
				t.Fatal("BUSLINE_POSTGRES_URL is not set and CI=true: run the tests with `make test`, which starts PostgreSQL")
			}
			t.Skip("BUSLINE_POSTGRES_URL is not set: no PostgreSQL to run the example on (`make test` starts one)")
		}
		var b [4]byte
		rand.Read(b[:])
		name := "sagas_" + hex.EncodeToString(b[:])
		t.Cleanup(func() {
			if db, err := sql.Open("pgx", pg); err == nil {
				db.Exec("DROP SCHEMA IF EXISTS " + name + " CASCADE")
				db.Close()
			}
		})
		out := runExample(t, bin, "-payment-timeout", "2s", "-amqp", url, "-postgres", pg, "-prefix", name+".", "-schema", name)
		check(t, out, append(want, "on the rabbitmq broker, instances in PostgreSQL, through the outbox"))
	})
}

func runExample(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("sagas %s: %v\n%s", strings.Join(args, " "), err, out.String())
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
