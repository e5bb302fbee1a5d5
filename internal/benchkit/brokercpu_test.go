package benchkit

import "testing"

func TestStatTicks(t *testing.T) {
	for _, c := range []struct {
		line string
		want int64
		ok   bool
	}{
		{"21404 (beam.smp) S 21384 21383 21383 0 -1 4194560 36310 0 0 0 1234 567 0 0 20 0 30 0 4455 1 2", 1801, true},
		{"7 (a) b) c) R 1 1 1 0 -1 0 0 0 0 0 10 5 0 0", 15, true},
		{"7 (short) S 1 2", 0, false},
		{"no parenthesis", 0, false},
		{"7 (x) S 1 1 1 0 -1 0 0 0 0 0 ten 5", 0, false},
	} {
		got, ok := statTicks([]byte(c.line))
		if got != c.want || ok != c.ok {
			t.Errorf("statTicks(%q) = %d, %v; want %d, %v", c.line, got, ok, c.want, c.ok)
		}
	}
}
