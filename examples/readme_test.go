package examples_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/busline/busline/amqp"
	"github.com/busline/busline/bus"
	"github.com/busline/busline/memory"
	"github.com/busline/busline/middleware"
	"github.com/busline/busline/transport"
)

// The README's claims that code can check: its Go blocks are copies of
// compiled files, its option tables list the structs' fields, its sample
// headers and time format are what the bus writes.

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// block is a fenced code block of the README.
type block struct {
	lang, source, body string
	line               int
}

var sourceMarker = regexp.MustCompile(`^<!-- source: (\S+) -->$`)

func blocks(text string) []block {
	var out []block
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		lang, ok := strings.CutPrefix(lines[i], "```")
		if !ok {
			continue
		}
		b := block{lang: lang, line: i + 1}
		if i > 0 {
			if m := sourceMarker.FindStringSubmatch(lines[i-1]); m != nil {
				b.source = m[1]
			}
		}
		j := i + 1
		for j < len(lines) && lines[j] != "```" {
			j++
		}
		b.body = strings.Join(lines[i+1:j], "\n")
		out = append(out, b)
		i = j
	}
	return out
}

// TestReadmeGoBlocks checks that every Go block of the README is a copy of
// lines of the compiled file its marker names, so that it cannot rot.
func TestReadmeGoBlocks(t *testing.T) {
	n := 0
	for _, b := range blocks(readme(t)) {
		if b.lang != "go" {
			continue
		}
		n++
		if b.source == "" {
			t.Errorf("README.md:%d: a Go block without a <!-- source: path --> marker on the line before", b.line)
			continue
		}
		src, err := os.ReadFile(filepath.Join("..", b.source))
		if err != nil {
			t.Errorf("README.md:%d: %v", b.line, err)
			continue
		}
		if !containsLines(string(src), b.body) {
			t.Errorf("README.md:%d: the block is not a copy of lines of %s (indentation aside): update it from the file", b.line, b.source)
		}
	}
	if n < 5 {
		t.Errorf("found %d Go blocks in README.md; the parser is broken", n)
	}
}

// containsLines reports whether the lines of part appear, consecutively,
// among the lines of whole, ignoring leading and trailing white space.
func containsLines(whole, part string) bool {
	trim := func(s string) []string {
		lines := strings.Split(strings.TrimSpace(s), "\n")
		for i, l := range lines {
			lines[i] = strings.TrimSpace(l)
		}
		return lines
	}
	w, p := trim(whole), trim(part)
	for i := 0; i+len(p) <= len(w); i++ {
		if slices.Equal(w[i:i+len(p)], p) {
			return true
		}
	}
	return false
}

var tableField = regexp.MustCompile("^\\| `(\\w+)` \\|")

// TestReadmeOptionTables checks that each option table lists exactly the
// exported fields of its struct, in order.
func TestReadmeOptionTables(t *testing.T) {
	text := readme(t)
	for _, c := range []struct {
		heading string
		typ     reflect.Type
	}{
		{"### bus.Options", reflect.TypeFor[bus.Options]()},
		{"### transport.QueueOptions", reflect.TypeFor[transport.QueueOptions]()},
		{"### middleware.RetryOptions", reflect.TypeFor[middleware.RetryOptions]()},
		{"### bus.Exchange", reflect.TypeFor[bus.Exchange]()},
		{"### amqp.Options", reflect.TypeFor[amqp.Options]()},
		{"### memory.Options", reflect.TypeFor[memory.Options]()},
	} {
		_, section, ok := strings.Cut(text, c.heading)
		if !ok {
			t.Errorf("README.md has no %q section", c.heading)
			continue
		}
		if i := strings.Index(section, "\n#"); i >= 0 {
			section = section[:i]
		}
		var documented []string
		for _, line := range strings.Split(section, "\n") {
			if m := tableField.FindStringSubmatch(line); m != nil {
				documented = append(documented, m[1])
			}
		}
		var fields []string
		for i := range c.typ.NumField() {
			if f := c.typ.Field(i); f.IsExported() {
				fields = append(fields, f.Name)
			}
		}
		if !slices.Equal(documented, fields) {
			t.Errorf("%s: the README's table lists\n%v\nthe struct has\n%v", c.heading, documented, fields)
		}
	}
}

// TestReadmeWireFormat checks the sample headers and the time format the
// README shows against what a Send writes.
func TestReadmeWireFormat(t *testing.T) {
	text := readme(t)
	if want := middleware.FormatTime(time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)); !strings.Contains(text, want) {
		t.Errorf("README.md does not show the time format busline writes, %s", want)
	}

	var documented []string
	for _, b := range blocks(text) {
		if b.lang == "text" && strings.Contains(b.body, "PikaBus.MessageId") {
			for _, line := range strings.Split(b.body, "\n") {
				if name, _, ok := strings.Cut(line, " "); ok && strings.HasPrefix(name, "PikaBus.") {
					documented = append(documented, name)
				}
			}
		}
	}
	slices.Sort(documented)

	ctx := context.Background()
	tr := memory.New(memory.Options{})
	defer tr.Close()
	orders, err := bus.New(tr, "orders", bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan transport.Headers, 1)
	if err := orders.HandleRaw("orders.PlaceOrder", func(ctx context.Context, m *transport.Message) error {
		got <- m.Headers.Clone()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	checkout, err := bus.New(tr, "checkout", bus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []*bus.Bus{orders, checkout} {
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer b.Shutdown(ctx)
	}
	if err := checkout.Send(ctx, "orders", struct{ OrderID string }{"42"}, bus.WithMessageType("orders.PlaceOrder")); err != nil {
		t.Fatal(err)
	}
	var written []string
	select {
	case h := <-got:
		for k := range h {
			written = append(written, k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message did not arrive")
	}
	slices.Sort(written)
	if !slices.Equal(documented, written) {
		t.Errorf("the README shows the headers\n%v\na Send writes\n%v", documented, written)
	}
}
