// Package progress draws progress lines on a terminal (stderr): a bar that
// redraws in place on a TTY and prints occasional plain lines otherwise, so
// logs of long runs stay readable.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Bar reports the progress of one task. It is safe for concurrent use.
type Bar struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	label   string
	total   float64
	start   time.Time
	last    time.Time
	every   time.Duration
	delay   time.Duration // nothing is drawn before this much time has passed
	drawn   bool
	done    bool
	lastLen int
}

// New returns a bar writing to w (usually os.Stderr). total is the amount
// that means 100 % (use 1 for fractions). A nil w gives a bar that draws
// nothing.
func New(w io.Writer, label string, total float64) *Bar {
	b := &Bar{w: w, label: label, total: total, start: time.Now(), every: 10 * time.Second, delay: 500 * time.Millisecond}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		b.tty = true
		b.every = 100 * time.Millisecond
	}
	return b
}

// IsTerminal reports whether the bar redraws in place.
func (b *Bar) IsTerminal() bool { return b.tty }

// Set reports the amount done so far, with an optional suffix (rates, loss).
func (b *Bar) Set(done float64, suffix string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.w == nil || b.done {
		return
	}
	now := time.Now()
	if now.Sub(b.start) < b.delay || now.Sub(b.last) < b.every || done >= b.total {
		return // the final state is Finish's to draw
	}
	b.last = now
	b.draw(done, suffix, false)
}

// Finish draws the final state and ends the line, if the bar was drawn at
// all: work that ends quickly leaves no trace.
func (b *Bar) Finish(suffix string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.w == nil || b.done || !b.drawn {
		b.done = true
		return
	}
	b.draw(b.total, suffix, true)
	b.done = true
}

func (b *Bar) draw(done float64, suffix string, final bool) {
	b.drawn = true
	frac := 0.0
	if b.total > 0 {
		frac = min(1, max(0, done/b.total))
	}
	elapsed := time.Since(b.start).Round(100 * time.Millisecond)
	var line string
	if b.tty {
		const width = 24
		filled := int(frac * width)
		line = fmt.Sprintf("%s [%s%s] %3.0f%% %s", b.label, strings.Repeat("=", filled), strings.Repeat(" ", width-filled), 100*frac, elapsed)
	} else {
		line = fmt.Sprintf("%s: %3.0f%% after %s", b.label, 100*frac, elapsed)
	}
	if suffix != "" {
		line += "  " + suffix
	}
	if b.tty {
		pad := ""
		if n := b.lastLen - len(line); n > 0 {
			pad = strings.Repeat(" ", n)
		}
		b.lastLen = len(line)
		end := ""
		if final {
			end = "\n"
		}
		fmt.Fprintf(b.w, "\r%s%s%s", line, pad, end)
		return
	}
	fmt.Fprintln(b.w, line)
}
