package feed

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// catchUpPage is how many events one store read returns while catching up.
const catchUpPage = 1000

// feedBuffer is how many events a stream may have ready for its client, so
// reading the store and sending to the client overlap instead of taking
// turns event by event.
const feedBuffer = 256

// Reader is what the feeds read from the store.
type Reader interface {
	ReadEvents(ctx context.Context, q ipa.EventQuery) ([]ipa.Event, error)
	HeadPosition(ctx context.Context) (int64, error)
	GetTask(ctx context.Context, id string) (*ipa.Task, error)
}

// Feed serves catch-up subscriptions over a store and a broker.
type Feed struct {
	store  Reader
	broker *Broker
	log    *slog.Logger
}

// NewFeed returns a feed reading from r and listening on b.
func NewFeed(r Reader, b *Broker, log *slog.Logger) *Feed {
	if log == nil {
		log = slog.Default()
	}
	return &Feed{store: r, broker: b, log: log}
}

// TaskEvents streams the task's events with version > after (all of them
// when after is 0), then live ones; with after nil it starts at the task's
// current version (live only). The channel closes when ctx ends or the store
// fails. Returns ENOTFOUND when the task does not exist.
func (f *Feed) TaskEvents(ctx context.Context, taskID string, after *int64) (<-chan *ipa.Event, error) {
	s, err := f.openTask(ctx, taskID, after)
	if err != nil {
		return nil, err
	}
	s.out = make(chan *ipa.Event, feedBuffer)
	go s.run(ctx, after != nil)
	return s.out, nil
}

// TaskEventBatches is TaskEvents in batches: each value is a non-empty run
// of consecutive events, at most batchSize of them (see stream.flush for
// when a batch is sent). Returns EINVALID when batchSize is outside
// 1..MaxBatchSize, ENOTFOUND when the task does not exist.
func (f *Feed) TaskEventBatches(ctx context.Context, taskID string, after *int64, batchSize int) (<-chan []*ipa.Event, error) {
	if err := checkBatchSize(batchSize); err != nil {
		return nil, err
	}
	s, err := f.openTask(ctx, taskID, after)
	if err != nil {
		return nil, err
	}
	s.startBatches(batchSize)
	go s.run(ctx, after != nil)
	return s.batches, nil
}

// openTask listens to the task and returns its stream, not yet running.
func (f *Feed) openTask(ctx context.Context, taskID string, after *int64) (*stream, error) {
	l := f.broker.listen(taskID) // listen before reading, so nothing commits unheard
	t, err := f.store.GetTask(ctx, taskID)
	if err != nil {
		f.broker.unlisten(l)
		return nil, err
	}
	last := t.Version
	if after != nil {
		if *after < 0 {
			f.broker.unlisten(l)
			return nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "afterVersion must not be negative.")
		}
		last = *after
	}
	return &stream{feed: f, l: l, last: last, taskID: taskID,
		seq: func(e ipa.Event) int64 { return e.Version }}, nil
}

// Events streams the global feed after the position (from the live head when
// after is nil), only the given types when types is not empty. The channel
// closes when ctx ends or the store fails.
func (f *Feed) Events(ctx context.Context, after *int64, types []string) (<-chan *ipa.Event, error) {
	s, err := f.openGlobal(ctx, after, types)
	if err != nil {
		return nil, err
	}
	s.out = make(chan *ipa.Event, feedBuffer)
	go s.run(ctx, after != nil)
	return s.out, nil
}

// EventBatches is Events in batches, as TaskEventBatches is TaskEvents.
// Returns EINVALID when batchSize is outside 1..MaxBatchSize.
func (f *Feed) EventBatches(ctx context.Context, after *int64, types []string, batchSize int) (<-chan []*ipa.Event, error) {
	if err := checkBatchSize(batchSize); err != nil {
		return nil, err
	}
	s, err := f.openGlobal(ctx, after, types)
	if err != nil {
		return nil, err
	}
	s.startBatches(batchSize)
	go s.run(ctx, after != nil)
	return s.batches, nil
}

// openGlobal listens to every task and returns the global stream, not yet
// running.
func (f *Feed) openGlobal(ctx context.Context, after *int64, types []string) (*stream, error) {
	l := f.broker.listen("")
	var last int64
	if after != nil {
		last = *after
	} else {
		head, err := f.store.HeadPosition(ctx)
		if err != nil {
			f.broker.unlisten(l)
			return nil, err
		}
		last = head
	}
	return &stream{feed: f, l: l, last: last, types: types,
		seq: func(e ipa.Event) int64 { return e.Position }}, nil
}

// MaxBatchSize is the largest batch a batched stream sends.
const MaxBatchSize = 1000

func checkBatchSize(n int) error {
	if n < 1 || n > MaxBatchSize {
		return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument,
			"batchSize must be from 1 to %d, got %d.", MaxBatchSize, n)
	}
	return nil
}

// stream is one running event subscription. last is the sequence number
// (version or position) of the last event it has accounted for — delivered,
// or skipped by the type filter.
//
// A stream sends either single events (out) or batches (batches, with
// batchSize > 0): a batch collects delivered events and is sent when it is
// full, or when nothing more is ready — the end of a catch-up from the store,
// or no commit waiting in the listener — so a live batch leaves as soon as
// the events already queued are in it, never after a timer.
type stream struct {
	feed   *Feed
	l      *listener
	out    chan *ipa.Event
	last   int64
	taskID string // "" = global feed by position
	types  []string
	seq    func(ipa.Event) int64

	batches   chan []*ipa.Event
	batchSize int
	batch     []*ipa.Event // collected, not yet sent
}

// startBatches makes the stream send batches of up to n events. The channel
// holds about feedBuffer events' worth of batches (at least one batch), so
// reading the store overlaps with sending, and what a slow client holds up
// stays bounded by the batch size, not the feed.
func (s *stream) startBatches(n int) {
	s.batchSize = n
	s.batches = make(chan []*ipa.Event, max(1, feedBuffer/n))
}

func (s *stream) closeOut() {
	if s.batches != nil {
		close(s.batches)
		return
	}
	close(s.out)
}

func (s *stream) run(ctx context.Context, catchUp bool) {
	defer s.closeOut()
	defer s.feed.broker.unlisten(s.l)
	if catchUp && !s.readStore(ctx) {
		return
	}
	// Commits are published by the goroutines that made them, after COMMIT,
	// so two of them can arrive swapped. A commit that does not follow on is
	// held briefly: usually the one before it arrives within microseconds and
	// both are delivered from memory. Only when the gap stays open (a commit
	// of another instance, a dropped batch) does the stream read the store;
	// without the hold, every swap would send every subscriber to the store
	// at once.
	var (
		held    []Commit
		timer   *time.Timer
		timeout <-chan time.Time
	)
	stopHolding := func() {
		held = held[:0]
		if timer != nil {
			timer.Stop()
			timer, timeout = nil, nil
		}
	}
	defer stopHolding()
	for {
		// Send what is collected unless another commit is already waiting
		// to join it.
		if len(s.batch) > 0 && len(s.l.ch) == 0 && !s.flush(ctx) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-timeout:
			stopHolding()
			if !s.readStore(ctx) {
				return
			}
		case cp := <-s.l.ch:
			c := *cp // shared with the other listeners: read only
			if s.l.takeLagged() || (len(c.Events) == 0 && !s.follows(c)) || len(held) >= maxHeld {
				stopHolding()
				if !s.readStore(ctx) {
					return
				}
				continue
			}
			if !s.follows(c) {
				held = append(held, c)
				if timer == nil {
					timer = time.NewTimer(holdGap)
					timeout = timer.C
				}
				continue
			}
			if !s.deliverCommit(ctx, c) {
				return
			}
			// Deliver whatever was held and now follows on, in order.
			for progressed := true; progressed && len(held) > 0; {
				progressed = false
				for i := 0; i < len(held); i++ {
					if s.follows(held[i]) {
						h := held[i]
						held = append(held[:i], held[i+1:]...)
						if !s.deliverCommit(ctx, h) {
							return
						}
						progressed = true
						i--
					}
				}
			}
			if len(held) == 0 {
				stopHolding()
			}
		}
	}
}

// How long and how many out-of-order commits a stream holds before it reads
// the store instead.
const (
	holdGap = 20 * time.Millisecond
	maxHeld = 64
)

func (s *stream) deliverCommit(ctx context.Context, c Commit) bool {
	for i := range c.Events {
		if !s.deliver(ctx, c.Events[i]) {
			return false
		}
	}
	return true
}

// follows reports whether the commit's events continue exactly where the
// stream stands, so they can be delivered without reading the store. Commits
// already accounted for are dropped (returns true with nothing new).
func (s *stream) follows(c Commit) bool {
	if len(c.Events) == 0 {
		return s.commitSeq(c) <= s.last // a bare notice: only skip when already seen
	}
	first := s.seq(c.Events[0])
	if s.seq(c.Events[len(c.Events)-1]) <= s.last {
		return true // all already delivered; deliver() drops each
	}
	return first <= s.last+1
}

func (s *stream) commitSeq(c Commit) int64 {
	if s.taskID != "" {
		return c.Version
	}
	return c.Position
}

// deliver sends e unless it was already accounted for or filtered out.
// Returns false when ctx ended. e is a commit's, shared with the other
// listeners: the stream sends a copy.
func (s *stream) deliver(ctx context.Context, e ipa.Event) bool {
	return s.deliverStored(ctx, &e)
}

// deliverStored is deliver for an event the stream may hand on as it is
// (read from the store for this stream alone): no copy per event.
func (s *stream) deliverStored(ctx context.Context, e *ipa.Event) bool {
	n := s.seq(*e)
	if n <= s.last {
		return true
	}
	s.last = n
	if len(s.types) > 0 && !slices.Contains(s.types, e.Type) {
		return true
	}
	if s.batchSize > 0 {
		if s.batch == nil {
			s.batch = make([]*ipa.Event, 0, min(s.batchSize, catchUpPage))
		}
		s.batch = append(s.batch, e)
		return len(s.batch) < s.batchSize || s.flush(ctx)
	}
	select {
	case s.out <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

// flush sends the collected batch, if any. Returns false when ctx ended.
func (s *stream) flush(ctx context.Context) bool {
	if len(s.batch) == 0 {
		return true
	}
	select {
	case s.batches <- s.batch:
		s.batch = nil
		return true
	case <-ctx.Done():
		return false
	}
}

// readStore delivers everything stored after s.last. Returns false when ctx
// ended or the store failed (the subscription then ends).
//
// On the global feed it first reads the head position: every position up to
// it has committed, so once the reads have delivered everything stored up
// to it, a position still missing below it is deleted history (a pruned or
// deleted task), never an event yet to come. s.last moves to the head, so a
// hole is accepted once and never sends the stream back to the store again.
func (s *stream) readStore(ctx context.Context) bool {
	var head int64
	if s.taskID == "" {
		var err error
		if head, err = s.feed.store.HeadPosition(ctx); err != nil {
			if ctx.Err() == nil {
				s.feed.log.Warn("subscription ended: store read failed", "err", err)
			}
			return false
		}
	}
	for {
		q := ipa.EventQuery{TaskID: s.taskID, After: s.last, Limit: catchUpPage}
		if s.taskID == "" {
			// The global filter is applied here, not in SQL: skipped events
			// must still advance s.last so gaps stay detectable.
			q.Types = nil
		}
		evs, err := s.feed.store.ReadEvents(ctx, q)
		if err != nil {
			if ctx.Err() == nil {
				s.feed.log.Warn("subscription ended: store read failed", "task_id", s.taskID, "err", err)
			}
			return false
		}
		for i := range evs {
			if !s.deliverStored(ctx, &evs[i]) {
				return false
			}
		}
		if len(evs) < catchUpPage {
			s.last = max(s.last, head)
			return true
		}
	}
}
