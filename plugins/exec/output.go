package exec

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ipa-dev/ipa/internal/podapi"
)

// Output batching: a batch goes to the host when it has flushLines lines or
// flushEvery has passed, whichever is first, so the host sees at most about
// ten calls a second however fast the command prints. At most maxPending
// lines wait while the host is away; more are dropped and counted.
const (
	flushEvery = 100 * time.Millisecond
	flushLines = 100
	maxPending = 5_000
	maxLineLen = 16 << 10 // longer lines are cut
)

// output collects a command's lines and sends them to the host in batches.
// Lines past the per-task cap are dropped; how many is reported once, with
// the final flush.
type output struct {
	host podapi.Host
	cap  int

	mu       sync.Mutex
	pending  []podapi.OutputLine
	accepted int // lines taken (under the cap)
	dropped  int // lines dropped (over the cap, or while the host was away)
	kick     chan struct{}
	closed   chan struct{}
	finished chan struct{}
}

func newOutput(host podapi.Host, cap int) *output {
	o := &output{host: host, cap: cap, kick: make(chan struct{}, 1), closed: make(chan struct{}), finished: make(chan struct{})}
	go o.run()
	return o
}

// add takes one line; it never blocks on the host.
func (o *output) add(stream, text string) {
	if len(text) > maxLineLen {
		text = text[:maxLineLen]
	}
	o.mu.Lock()
	switch {
	case o.accepted >= o.cap || len(o.pending) >= maxPending:
		o.dropped++
	default:
		o.accepted++
		o.pending = append(o.pending, podapi.OutputLine{Stream: stream, Text: text})
	}
	full := len(o.pending) >= flushLines
	o.mu.Unlock()
	if full {
		select {
		case o.kick <- struct{}{}:
		default:
		}
	}
}

func (o *output) counts() (accepted, dropped int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.accepted, o.dropped
}

func (o *output) run() {
	defer close(o.finished)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	last := time.Time{}
	for {
		select {
		case <-o.closed:
			o.flushAll()
			return
		case <-tick.C:
		case <-o.kick:
			// Rate bound: a full batch waits out the rest of the interval.
			if wait := flushEvery - time.Since(last); wait > 0 {
				select {
				case <-time.After(wait):
				case <-o.closed:
					o.flushAll()
					return
				}
			}
		}
		last = time.Now()
		o.flush(false)
	}
}

// flush sends up to flushLines pending lines; final also reports the dropped
// count. It reports whether the host took the batch.
func (o *output) flush(final bool) bool {
	o.mu.Lock()
	n := min(len(o.pending), flushLines)
	batch := append([]podapi.OutputLine(nil), o.pending[:n]...)
	dropped := 0
	if final && n == len(o.pending) {
		dropped = o.dropped
	}
	o.mu.Unlock()
	if n == 0 && dropped == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := o.host.Output(ctx, podapi.OutputRequest{Lines: batch, Dropped: dropped})
	if err != nil && errors.Is(err, podapi.ErrHostUnavailable) {
		return false // keep the lines; try again later
	}
	// Sent, or refused for good: either way these lines are done.
	o.mu.Lock()
	o.pending = o.pending[n:]
	o.mu.Unlock()
	return true
}

// flushAll sends everything left, the dropped count last, waiting for a host
// (re)attach while the host is away.
func (o *output) flushAll() {
	backoff := 100 * time.Millisecond
	for {
		o.mu.Lock()
		left := len(o.pending)
		o.mu.Unlock()
		if o.flush(true) {
			if left <= flushLines {
				return
			}
			continue
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}

// close flushes what is left (and the dropped count) and returns when done.
func (o *output) close() {
	close(o.closed)
	<-o.finished
}
