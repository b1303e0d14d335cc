// Package feed is the read side of the event log (its write side is package
// eventlog). It turns the stored log into live feeds: catch-up subscriptions
// that read what is stored and then follow what commits, with no gap and no
// duplicate across the switch, for one task's stream, for the global feed,
// and for task rows.
//
// How the no-gap guarantee works: the store assigns global positions densely
// (1, 2, 3…) and in commit order, so a subscriber can tell exactly whether the
// next event it hears about follows the last one it delivered. Live delivery is
// only a shortcut: when an event follows on (position = last+1 globally,
// version = last+1 in a stream) it is sent as it is; anything else — a gap, a
// notice from another instance that carries no events, a dropped batch after
// the subscriber fell behind — makes the subscriber read the store from its
// last position, which is always correct. Duplicates are dropped by position.
//
// Deleted history: deleting a closed task (deleteTask, ipa prune) removes its
// whole stream, so the stored log has holes; positions are never reused and
// stay strictly increasing, but are dense only as allocated, not as stored.
// A hole is only ever behind the head: a global read therefore takes the head
// position first, and a gap still open below it after the read is accepted as
// deleted history (the stream moves on to the head) instead of being waited
// for. A task stream is deleted whole, so versions within a stream stay dense.
package feed

import (
	"math"
	"sync"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// subscriberBuffer is how many commits may wait for a slow subscriber. Past
// that the broker drops the subscriber's batches and marks it lagging; the
// subscriber then catches up from the store. The producer never waits.
const subscriberBuffer = 256

// Commit is what one committed transaction published: its events (empty for
// a notice from another instance) and the task row after it.
type Commit struct {
	TaskID   string
	Version  int64 // task version after the commit
	Position int64 // position of the commit's last event
	Events   []ipa.Event
	Task     *ipa.Task // nil for a notice from another instance
}

// Broker fans commits out to this process's subscribers. Publish never
// blocks. The zero value is not usable; call NewBroker.
type Broker struct {
	mu      sync.Mutex
	subs    map[*listener]struct{}
	changes map[*changeListener]struct{}
}

// NewBroker returns an empty broker.
func NewBroker() *Broker {
	return &Broker{subs: make(map[*listener]struct{}), changes: make(map[*changeListener]struct{})}
}

// changeListener is a taskChanged subscriber's mailbox: the latest commit per
// task, so a slow reader gets every changed task's newest view and the
// producer never waits.
type changeListener struct {
	mu       sync.Mutex
	pending  map[string]Commit
	overflow bool
	resync   bool          // notices may have been lost: read the store from the last position
	wake     chan struct{} // capacity 1
}

func (b *Broker) listenChanges() *changeListener {
	l := &changeListener{pending: make(map[string]Commit), wake: make(chan struct{}, 1)}
	b.mu.Lock()
	b.changes[l] = struct{}{}
	b.mu.Unlock()
	return l
}

func (b *Broker) unlistenChanges(l *changeListener) {
	b.mu.Lock()
	delete(b.changes, l)
	b.mu.Unlock()
}

// take returns the pending commits and whether the mailbox overflowed.
func (l *changeListener) take() (map[string]Commit, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, o := l.pending, l.overflow
	l.pending, l.overflow = make(map[string]Commit), false
	return p, o
}

// markResync asks the subscriber to read what changed in the store since
// the last commit it heard of (notices may have been lost).
func (l *changeListener) markResync() {
	l.mu.Lock()
	l.resync = true
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// takeResync reports and clears the resync mark.
func (l *changeListener) takeResync() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.resync
	l.resync = false
	return r
}

func (l *changeListener) put(c Commit) {
	l.mu.Lock()
	if old, ok := l.pending[c.TaskID]; !ok || old.Version < c.Version {
		if !ok && len(l.pending) >= maxPendingChanges {
			l.overflow = true
		} else {
			l.pending[c.TaskID] = c
		}
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// listener is one subscriber's mailbox.
type listener struct {
	taskID string // "" hears every task
	// ch carries pointers: one Commit is shared by every listener it is
	// sent to, and an idle listener's buffer is 8 bytes a slot, not 64
	// (ten thousand idle subscribers hold 20 MiB less).
	ch     chan *Commit
	mu     sync.Mutex
	lagged bool // a commit was dropped: read the store before trusting live data
}

func (b *Broker) listen(taskID string) *listener {
	l := &listener{taskID: taskID, ch: make(chan *Commit, subscriberBuffer)}
	b.mu.Lock()
	b.subs[l] = struct{}{}
	b.mu.Unlock()
	return l
}

func (b *Broker) unlisten(l *listener) {
	b.mu.Lock()
	delete(b.subs, l)
	b.mu.Unlock()
}

// Publish hands a commit to every interested subscriber without waiting: a
// subscriber whose buffer is full is marked lagging instead.
func (b *Broker) Publish(c Commit) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for l := range b.changes {
		l.put(c)
	}
	shared := &c
	for l := range b.subs {
		if l.taskID != "" && l.taskID != c.TaskID {
			continue
		}
		select {
		case l.ch <- shared:
		default:
			l.mu.Lock()
			l.lagged = true
			l.mu.Unlock()
		}
	}
}

// Resync makes every event subscriber read the store, as if it had missed a
// commit: used when notices from other instances may have been lost.
// taskChanged subscribers read the tasks changed since the last commit they
// handled.
func (b *Broker) Resync() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for l := range b.changes {
		l.markResync()
	}
	resync := &Commit{Position: math.MaxInt64, Version: math.MaxInt64}
	for l := range b.subs {
		select {
		case l.ch <- resync:
		default:
			l.mu.Lock()
			l.lagged = true
			l.mu.Unlock()
		}
	}
}

// Subscribers returns how many subscribers are listening (for metrics/tests).
func (b *Broker) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs) + len(b.changes)
}

// takeLagged reports and clears the lagging mark.
func (l *listener) takeLagged() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	was := l.lagged
	l.lagged = false
	return was
}
