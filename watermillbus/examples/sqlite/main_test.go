package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// The example runs end to end on a fresh database file.
func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), filepath.Join(t.TempDir(), "bus.db"), &out); err != nil {
		t.Fatal(err)
	}
	want := "orders: placing order 42\nbilling: invoicing order 42\ndone: order 42 invoiced\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}
