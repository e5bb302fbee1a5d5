package bus

import (
	"regexp"
	"testing"
	"time"
	"unsafe"

	"github.com/busline/busline/middleware"
)

// TestNewIDAndTime checks the id and time made in one buffer: the id has
// newID's form, the time is the format's text of now, and the boxes hold
// the same strings.
func TestNewIDAndTime(t *testing.T) {
	form := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	now := time.Date(2026, 11, 22, 9, 30, 1, 123456789, time.FixedZone("x", 3600))
	seen := map[string]bool{}
	for _, f := range []middleware.TimeFormat{middleware.TimeRFC3339, middleware.TimePikaBus1} {
		for range 100 {
			id, idBox, timeBox := newIDAndTime(now, f)
			if !form.MatchString(id) || seen[id] {
				t.Fatalf("id %q: not a v4 UUID, or seen before", id)
			}
			seen[id] = true
			if s, ok := idBox.(string); !ok || s != id {
				t.Fatalf("id box %#v, want %q", idBox, id)
			}
			if s, ok := timeBox.(string); !ok || s != f.Format(now) {
				t.Fatalf("time box %#v, want %q", timeBox, f.Format(now))
			}
		}
	}
	// A year past 9999 writes a longer time than the buffer holds.
	far := time.Date(12026, 11, 22, 9, 30, 1, 0, time.UTC)
	id, idBox, timeBox := newIDAndTime(far, middleware.TimeRFC3339)
	if !form.MatchString(id) || idBox != any(id) || timeBox != any(middleware.FormatTime(far)) {
		t.Errorf("year 12026: %q, %#v, %#v", id, idBox, timeBox)
	}
	if !sharedBoxes {
		t.Error("sharedBoxes is false: interface values do not have the layout stringBox expects")
	}
	if raceEnabled {
		return
	}
	if n := testing.AllocsPerRun(100, func() { newIDAndTime(now, middleware.TimeRFC3339) }); n != 1 {
		t.Errorf("newIDAndTime: %v allocations, want 1", n)
	}
}

// TestStringBox checks that a box made by stringBox holds the string, as a
// string, compares and hashes as one made by a conversion does, and points
// to the string given.
func TestStringBox(t *testing.T) {
	s := new(string)
	*s = "PikaBus"
	v := stringBox(s)
	if got, ok := v.(string); !ok || got != "PikaBus" || v != any("PikaBus") {
		t.Fatalf("stringBox = %#v", v)
	}
	m := map[any]int{any("PikaBus"): 1}
	if m[v] != 1 {
		t.Error("a shared box does not find the map entry of an equal string")
	}
	if (*eface)(unsafe.Pointer(&v)).data != unsafe.Pointer(s) {
		t.Error("the box does not point to the string given")
	}
}

// TestIDsVaryFromTheStart checks that ids differ in their first characters,
// so that a shortened id (as printed in logs and tools) tells messages
// apart: an id is random throughout, not a fixed prefix and a counter.
func TestIDsVaryFromTheStart(t *testing.T) {
	const n = 1000
	firsts := map[string]bool{}
	lasts := map[string]bool{}
	for range n {
		id := NewMessageID()
		firsts[id[:8]] = true
		lasts[id[len(id)-8:]] = true
	}
	// Birthday bound on 32 bits: 1,000 random prefixes collide about once in
	// ten thousand runs; a fixed prefix gives 1.
	if len(firsts) < n-2 || len(lasts) < n-2 {
		t.Errorf("%d distinct first 8 characters and %d distinct last 8 in %d ids", len(firsts), len(lasts), n)
	}
}
