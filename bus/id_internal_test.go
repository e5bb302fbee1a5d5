package bus

import (
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/busline/busline/middleware"
)

var idForm = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestNewIDAndTime checks the id and time made together: the id is a
// version 7 UUID, the time is the format's text of now, and the header
// values hold the same strings.
func TestNewIDAndTime(t *testing.T) {
	now := time.Date(2026, 11, 22, 9, 30, 1, 123456789, time.FixedZone("x", 3600))
	seen := map[string]bool{}
	for _, f := range []middleware.TimeFormat{middleware.TimeRFC3339, middleware.TimePikaBus1} {
		for range 100 {
			id, idBox, timeBox := newIDAndTime(now, f)
			if !idForm.MatchString(id) || seen[id] {
				t.Fatalf("id %q: not a v7 UUID, or seen before", id)
			}
			seen[id] = true
			if s, ok := idBox.(string); !ok || s != id {
				t.Fatalf("id value %#v, want %q", idBox, id)
			}
			if s, ok := timeBox.(string); !ok || s != f.Format(now) {
				t.Fatalf("time value %#v, want %q", timeBox, f.Format(now))
			}
		}
	}
	// A year past 9999 writes a longer time than the buffer holds.
	far := time.Date(12026, 11, 22, 9, 30, 1, 0, time.UTC)
	id, idBox, timeBox := newIDAndTime(far, middleware.TimeRFC3339)
	if !idForm.MatchString(id) || idBox != any(id) || timeBox != any(middleware.FormatTime(far)) {
		t.Errorf("year 12026: %q, %#v, %#v", id, idBox, timeBox)
	}
	if raceEnabled {
		return
	}
	// The texts, the two header values, and the 16 random bytes uuid.NewV7
	// reads through an io.Reader (they escape).
	if n := testing.AllocsPerRun(100, func() { newIDAndTime(now, middleware.TimeRFC3339) }); n != 4 {
		t.Errorf("newIDAndTime: %v allocations, want 4", n)
	}
}

// TestIDsOrderAndVary checks what version 7 promises: ids made one after
// the other sort in the order they were made (to the millisecond), and
// their random ends tell them apart, so that an id shortened to its end (as
// tools print it) still names one message.
func TestIDsOrderAndVary(t *testing.T) {
	const n = 1000
	ids := make([]string, n)
	lasts := map[string]bool{}
	for i := range ids {
		ids[i] = NewMessageID()
		if !idForm.MatchString(ids[i]) {
			t.Fatalf("id %q is not a v7 UUID", ids[i])
		}
		lasts[ids[i][len(ids[i])-8:]] = true
	}
	if !slices.IsSorted(ids) {
		t.Error("ids made one after the other do not sort in that order")
	}
	// Birthday bound on 32 random bits: 1,000 ends collide about once in
	// ten thousand runs.
	if len(lasts) < n-2 {
		t.Errorf("%d distinct last 8 characters in %d ids", len(lasts), n)
	}
}
