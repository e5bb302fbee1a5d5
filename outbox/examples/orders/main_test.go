package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/internal/brokertest"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/transport"
)

// The example on SQLite and the memory broker, and on PostgreSQL and
// RabbitMQ: orders posted over HTTP are billed once each, a repeated POST
// is refused, and an OrderPlaced delivered twice bills once.
func TestExample(t *testing.T) {
	t.Run("sqlite+memory", func(t *testing.T) {
		tr := memory.New(memory.Options{})
		defer tr.Close()
		try(t, Config{SQLite: filepath.Join(t.TempDir(), "shop.db"), Transport: tr}, tr)
	})
	t.Run("postgres+rabbitmq", func(t *testing.T) {
		pg := os.Getenv("BUSLINE_POSTGRES_URL")
		if pg == "" {
			if os.Getenv("CI") == "true" {
				t.Fatal("BUSLINE_POSTGRES_URL is not set and CI=true")
			}
			t.Skip("BUSLINE_POSTGRES_URL is not set: no PostgreSQL (`make test` starts one)")
		}
		url := brokertest.URL(t)
		var b [4]byte
		rand.Read(b[:])
		name := "orders_example_" + hex.EncodeToString(b[:])
		db, err := sql.Open("pgx", pg)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec("CREATE SCHEMA " + name); err != nil {
			t.Fatal(err)
		}
		defer db.Exec("DROP SCHEMA " + name + " CASCADE")
		tr, err := amqp.Dial(context.Background(), url, amqp.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		c := Config{Postgres: pg, AMQP: url, Schema: name, Prefix: name + "."}
		defer tr.DeleteQueue(context.Background(), c.Prefix+"billing")
		try(t, c, tr)
	})
}

func try(t *testing.T, c Config, client transport.Transport) {
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, c, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	base := "http://" + ln.Addr().String()

	post := func(id string, amount int) int {
		body, _ := json.Marshal(OrderPlaced{ID: id, Amount: amount})
		resp, err := http.Post(base+"/orders", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 5 {
		if code := post(fmt.Sprintf("o%d", i), 10*(i+1)); code != http.StatusCreated {
			t.Fatalf("POST order o%d: %d", i, code)
		}
	}
	if code := post("o1", 20); code != http.StatusConflict {
		t.Errorf("POST an order again: %d, want 409", code)
	}
	if code := post("", 1); code != http.StatusBadRequest {
		t.Errorf("POST a bad order: %d, want 400", code)
	}
	// An OrderPlaced delivered twice, as after a crash between dispatch
	// and marking: the same message id.
	sender, err := bus.New(client, "", bus.Options{QueuePrefix: c.Prefix, TopicPrefix: c.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	for range 2 {
		if err := sender.Publish(ctx, "orders.placed", OrderPlaced{ID: "dup", Amount: 7}, bus.WithMessageID("dup-1"), bus.WithRequireSubscriber(true)); err != nil {
			t.Fatal(err)
		}
	}

	want := []Bill{{"dup", 7}, {"o0", 10}, {"o1", 20}, {"o2", 30}, {"o3", 40}, {"o4", 50}}
	var got []Bill
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(base + "/bills")
		if err != nil {
			t.Fatal(err)
		}
		got = nil
		json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Let a late duplicate arrive, if there were one to arrive.
	time.Sleep(200 * time.Millisecond)
	resp, err := http.Get(base + "/bills")
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if !slices.Equal(got, want) {
		t.Errorf("bills %v, want %v", got, want)
	}
}
