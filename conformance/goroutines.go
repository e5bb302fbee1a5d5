package conformance

import (
	"bytes"
	"runtime"
	"strconv"
	"strings"
)

// goroutine is one entry of a runtime.Stack dump of all goroutines.
type goroutine struct {
	id    uint64
	stack string
}

// allGoroutines returns every goroutine's stack, as runtime.Stack gives it.
func allGoroutines() []goroutine {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []goroutine
	for _, block := range bytes.Split(buf, []byte("\n\n")) {
		s := string(block)
		rest, ok := strings.CutPrefix(s, "goroutine ")
		if !ok {
			continue
		}
		idText, _, _ := strings.Cut(rest, " ")
		id, err := strconv.ParseUint(idText, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, goroutine{id: id, stack: s})
	}
	return out
}

// goroutineIDs returns the IDs of the goroutines running now.
func goroutineIDs() map[uint64]bool {
	ids := map[uint64]bool{}
	for _, g := range allGoroutines() {
		ids[g.id] = true
	}
	return ids
}

// goroutinesSince returns the goroutines that did not exist in before,
// leaving out those of package testing (other subtests starting or
// waiting to run in parallel) and the caller's own.
func goroutinesSince(before map[uint64]bool) []goroutine {
	var out []goroutine
	for i, g := range allGoroutines() {
		if i == 0 || before[g.id] || isTestingGoroutine(g.stack) {
			// The first goroutine of the dump is the caller.
			continue
		}
		out = append(out, g)
	}
	return out
}

// isTestingGoroutine reports whether a stack belongs to package testing's
// own machinery rather than to the code under test.
func isTestingGoroutine(stack string) bool {
	return strings.Contains(stack, "\ntesting.") || strings.Contains(stack, "\ncreated by testing.")
}
