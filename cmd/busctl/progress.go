package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// bar is a progress bar on standard error, drawn only when it is a
// terminal, at most ten times a second.
type bar struct {
	w     io.Writer
	label string
	start time.Time
	last  time.Time
	drawn bool
}

func (g *globals) progress(label string) *bar {
	b := &bar{label: label, start: time.Now()}
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 && !g.noProgress {
		b.w = os.Stderr
	}
	return b
}

func (b *bar) set(done, total int) {
	if b.w == nil || (time.Since(b.last) < 100*time.Millisecond && done < total) {
		return
	}
	b.last = time.Now()
	const width = 30
	filled := width
	if total > 0 {
		filled = min(width*done/total, width)
	}
	rate := float64(done) / max(time.Since(b.start).Seconds(), 0.001)
	fmt.Fprintf(b.w, "\r%s [%s%s] %d/%d %.0f/s ", b.label, strings.Repeat("#", filled), strings.Repeat(" ", width-filled), done, total, rate)
	b.drawn = true
}

func (b *bar) done() {
	if b.w != nil && b.drawn {
		fmt.Fprintln(b.w)
	}
}
