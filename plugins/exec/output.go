package exec

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ipa-dev/ipa/sdk/pod"
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
// Of a command that prints more than the per-task cap (maxOutputLines), the
// first half of the cap (the head) is streamed as it comes and the last half
// (the tail) is kept in a ring and sent when the command ends; what fell in
// between is dropped. The tail is sent after a marker line
// ("[ipa: N lines dropped]", stream stdout) whose pod_output event carries
// dropped: N, so a reader sees where and how much is missing. Lines dropped
// while the host was away (more than maxPending waiting) are reported as
// dropped with the last batch.
type output struct {
	host    pod.Host
	headCap int
	tailCap int

	mu       sync.Mutex
	pending  []pod.OutputLine
	head     int              // lines taken into the head
	tail     []pod.OutputLine // ring of the latest lines past the head
	tailNext int              // ring index the next line goes to
	tailKept int              // lines of the tail queued once the command ended
	between  int              // lines dropped between head and tail
	dropped  int              // lines dropped while the host was away
	marker   int              // index in pending of the marker line, -1 when none
	errTail  []string         // the last few stderr lines, whatever the cap, for the exit classification
	kick     chan struct{}
	closed   chan struct{}
	finished chan struct{}
}

// errTailLines is how many of the last stderr lines the output remembers.
const errTailLines = 5

func newOutput(host pod.Host, cap int) *output {
	headCap := (cap + 1) / 2
	o := &output{host: host, headCap: headCap, tailCap: cap - headCap, marker: -1,
		kick: make(chan struct{}, 1), closed: make(chan struct{}), finished: make(chan struct{})}
	go o.run()
	return o
}

// add takes one line; it never blocks on the host.
func (o *output) add(stream, text string) {
	if len(text) > maxLineLen {
		text = text[:maxLineLen]
	}
	line := pod.OutputLine{Stream: stream, Text: text}
	o.mu.Lock()
	if stream == pod.Stderr {
		if len(o.errTail) == errTailLines {
			o.errTail = o.errTail[1:]
		}
		o.errTail = append(o.errTail, text)
	}
	switch {
	case o.head < o.headCap && len(o.pending) >= maxPending:
		o.dropped++
	case o.head < o.headCap:
		o.head++
		o.pending = append(o.pending, line)
	case o.tailCap == 0:
		o.between++
	case len(o.tail) < o.tailCap:
		o.tail = append(o.tail, line)
	default:
		o.tail[o.tailNext] = line // the oldest tail line falls between
		o.tailNext = (o.tailNext + 1) % o.tailCap
		o.between++
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

// counts returns the lines kept (head and tail), those dropped in all, and
// those of them dropped between head and tail.
func (o *output) counts() (kept, dropped, between int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.head + len(o.tail) + o.tailKept, o.between + o.dropped, o.between
}

// stderrTail returns the last few stderr lines, oldest first.
func (o *output) stderrTail() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.errTail...)
}

// queueTail moves the kept tail (after its marker) into pending, once the
// command has ended.
func (o *output) queueTail() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.between > 0 {
		o.marker = len(o.pending)
		o.pending = append(o.pending, pod.OutputLine{Stream: pod.Stdout, Text: fmt.Sprintf("[ipa: %d lines dropped]", o.between)})
	}
	o.pending = append(o.pending, o.tail[o.tailNext:]...)
	o.pending = append(o.pending, o.tail[:o.tailNext]...)
	o.tailKept = len(o.tail)
	o.tail, o.tailNext = nil, 0
}

func (o *output) run() {
	defer close(o.finished)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	last := time.Time{}
	for {
		select {
		case <-o.closed:
			o.queueTail()
			o.flushAll()
			return
		case <-tick.C:
		case <-o.kick:
			// Rate bound: a full batch waits out the rest of the interval.
			if wait := flushEvery - time.Since(last); wait > 0 {
				select {
				case <-time.After(wait):
				case <-o.closed:
					o.queueTail()
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
	if o.marker > 0 && o.marker < n {
		n = o.marker // the marker starts a batch of its own
	}
	batch := append([]pod.OutputLine(nil), o.pending[:n]...)
	dropped := 0
	if o.marker == 0 {
		dropped = o.between
	}
	if final && n == len(o.pending) {
		dropped += o.dropped
	}
	o.mu.Unlock()
	if n == 0 && dropped == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := o.host.Output(ctx, pod.OutputRequest{Lines: batch, Dropped: dropped})
	if err != nil && errors.Is(err, pod.ErrHostUnavailable) {
		return false // keep the lines; try again later
	}
	// Sent, or refused for good: either way these lines are done.
	o.mu.Lock()
	o.pending = o.pending[n:]
	if o.marker >= 0 {
		if o.marker -= n; o.marker < 0 {
			o.marker = -1
		}
	}
	o.mu.Unlock()
	return true
}

// flushAll sends everything left, the dropped count last, waiting for a host
// (re)attach while the host is away.
func (o *output) flushAll() {
	backoff := 100 * time.Millisecond
	for {
		if o.flush(true) {
			o.mu.Lock()
			left := len(o.pending)
			o.mu.Unlock()
			if left == 0 {
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
