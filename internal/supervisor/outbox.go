package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// The outbox keeps the pod facts (pod_crashed, pod_stopped, pod_lost,
// pod_restart_*, pod_reattached) the store could not take because it was
// unreachable, and writes them when it is back. What happened to a process
// happened whether or not the database was up: the stream must still say so,
// once, in the order it happened.
//
// Every fact of a task goes through the task's queue: while one waits, the
// task's later facts wait behind it, so a task's pod events are never
// reordered. A fact whose task has nothing waiting is written at once by the
// caller (the common case costs one write, as before). The queue is bounded
// (Config.OutboxLimit over all tasks); a fact that would exceed it is
// dropped, counted and logged as an error naming the task and the event.
//
// A queued fact has no event id yet; the caller gets a token in its place,
// which later facts may name as their causation: the token is replaced by the
// real id when the fact is written.

// storeUnavailable reports whether err says the store is unreachable: the
// write may succeed later, unchanged.
func storeUnavailable(err error) bool {
	return ipa.ErrorCode(err) == ipa.EUNAVAILABLE && ipa.ErrorReason(err) == ipa.ReasonStoreUnavailable
}

// tokenPrefix marks the stand-in id of a fact still in the outbox.
const tokenPrefix = "pending-pod-event-"

type outbox struct {
	limit int

	mu       sync.Mutex
	queues   map[string]*taskQueue
	n        int               // facts queued after a failed write, all tasks
	seq      int64             // token numbers
	resolved map[string]string // token → event id, once written ("" if given up)
	wake     chan struct{}     // a fact was queued: the retry loop should run
}

// taskQueue is one task's facts, oldest first. sem lets one writer at a time
// work through it, which keeps the order.
type taskQueue struct {
	sem     chan struct{}
	entries []*outEntry
	since   time.Time // when its oldest fact was queued
}

type outEntry struct {
	token  string
	ctx    context.Context // the recording context's values (actor, correlation id), no deadline
	ev     ipa.NewEvent
	queued bool // a write failed for want of the store: the token was handed out

	// Set once the entry leaves the queue.
	done bool
	id   string
	err  error
}

func newOutbox(limit int) *outbox {
	return &outbox{limit: limit, queues: map[string]*taskQueue{}, resolved: map[string]string{}, wake: make(chan struct{}, 1)}
}

// add appends ev to taskID's queue and returns its entry.
func (o *outbox) add(ctx context.Context, taskID string, ev ipa.NewEvent) *outEntry {
	o.mu.Lock()
	defer o.mu.Unlock()
	q := o.queues[taskID]
	if q == nil {
		q = &taskQueue{sem: make(chan struct{}, 1)}
		o.queues[taskID] = q
	}
	o.seq++
	e := &outEntry{token: tokenPrefix + strconv.FormatInt(o.seq, 10), ctx: context.WithoutCancel(ctx), ev: ev}
	q.entries = append(q.entries, e)
	return e
}

// resolve maps a token naming a written fact to its event id. o.mu held.
func (o *outbox) resolve(id string) string {
	if !strings.HasPrefix(id, tokenPrefix) {
		return id
	}
	return o.resolved[id]
}

// resolveID is resolve for callers not holding o.mu.
func (o *outbox) resolveID(id string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.resolve(id)
}

// pendingTasks returns the tasks with queued facts, longest waiting first.
func (o *outbox) pendingTasks() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	type tq struct {
		id    string
		since time.Time
	}
	var all []tq
	for id, q := range o.queues {
		if len(q.entries) > 0 {
			all = append(all, tq{id, q.since})
		}
	}
	// Few tasks wait at once; insertion sort keeps this dependency-free.
	for i := 1; i < len(all); i++ {
		for j := i; j > 0 && all[j].since.Before(all[j-1].since); j-- {
			all[j], all[j-1] = all[j-1], all[j]
		}
	}
	out := make([]string, len(all))
	for i, t := range all {
		out[i] = t.id
	}
	return out
}

// pending is how many facts wait.
func (o *outbox) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n
}

// record appends ev to the task's stream through the outbox and returns the
// event id. When the store is unreachable the fact is kept (err wraps the
// store's STORE_UNAVAILABLE error and the id is a token later facts may name
// as causation) and written when the store is back. Other errors are the
// Recorder's: nothing is kept. A failure is logged.
func (s *Supervisor) record(ctx context.Context, taskID string, typ string, data any, causation string) (string, error) {
	o := s.out
	e := o.add(ctx, taskID, ipa.NewEvent{Type: typ, Data: data, CausationID: causation})
	s.flushTask(ctx, taskID)
	o.mu.Lock()
	if e.done {
		id, err := e.id, e.err
		o.mu.Unlock()
		if err != nil {
			s.log.Error("record pod event", slog.String("task_id", taskID), slog.String("type", typ), slog.Any("error", err))
		}
		return id, err
	}
	// Still waiting: the store is unreachable (or another writer of this
	// task's queue holds it past ctx).
	if o.n >= o.limit {
		o.remove(taskID, e)
		o.mu.Unlock()
		s.m.dropped.WithLabelValues("outbox_full").Inc()
		s.log.Error("POD EVENT DROPPED: the database is unreachable and the outbox is full",
			slog.String("task_id", taskID), slog.String("type", typ), slog.Any("data", data),
			slog.Int("outbox_limit", o.limit), slog.String("decision", "drop_newest"))
		return "", fmt.Errorf("pod event %s of task %s dropped: outbox full: %w", typ, taskID, errUnavailableStore)
	}
	e.queued = true
	o.n++
	if q := o.queues[taskID]; q != nil && q.since.IsZero() {
		q.since = time.Now()
	}
	pending := o.n
	o.mu.Unlock()
	s.m.pending.Set(float64(pending))
	select {
	case o.wake <- struct{}{}:
	default:
	}
	s.log.Warn("pod event kept for later: the database is unreachable", slog.String("task_id", taskID),
		slog.String("type", typ), slog.Int("pending", pending), slog.String("decision", "queue"))
	return e.token, fmt.Errorf("pod event %s of task %s not written yet: %w", typ, taskID, errUnavailableStore)
}

// errUnavailableStore is the STORE_UNAVAILABLE error the outbox reports for a
// fact it keeps or drops (the store's own error carries the cause).
var errUnavailableStore = ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonStoreUnavailable, "The database is unreachable.")

// remove takes e out of its task's queue. o.mu held.
func (o *outbox) remove(taskID string, e *outEntry) {
	q := o.queues[taskID]
	if q == nil {
		return
	}
	for i, x := range q.entries {
		if x == e {
			q.entries = append(q.entries[:i], q.entries[i+1:]...)
			break
		}
	}
	if len(q.entries) == 0 {
		delete(o.queues, taskID)
	}
}

// flushTask writes the task's queued facts in order until none is left or
// the store is unreachable; it returns nil when the queue is empty, the
// store's error otherwise. ctx bounds the whole flush; each write has at most
// RecordTimeout and the values (actor, correlation id) of the context its
// fact was recorded with. A fact the store refuses for another reason is
// dropped and logged.
func (s *Supervisor) flushTask(ctx context.Context, taskID string) error {
	o := s.out
	o.mu.Lock()
	q := o.queues[taskID]
	o.mu.Unlock()
	if q == nil {
		return nil
	}
	select {
	case q.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("pod events of task %s wait: %w", taskID, errUnavailableStore)
	}
	defer func() { <-q.sem }()
	for {
		o.mu.Lock()
		if o.queues[taskID] != q || len(q.entries) == 0 {
			o.mu.Unlock()
			return nil
		}
		e := q.entries[0]
		ev := e.ev
		ev.CausationID = o.resolve(ev.CausationID)
		o.mu.Unlock()

		wctx, cancel := context.WithTimeout(e.ctx, s.cfg.RecordTimeout)
		stop := context.AfterFunc(ctx, cancel)
		got, err := s.cfg.Recorder.RecordPodEvent(wctx, taskID, ev)
		stop()
		cancel()
		if storeUnavailable(err) || (err != nil && ctx.Err() != nil) {
			return fmt.Errorf("pod events of task %s wait: %w", taskID, err)
		}

		o.mu.Lock()
		if len(q.entries) > 0 && q.entries[0] == e {
			q.entries = q.entries[1:]
		}
		if len(q.entries) == 0 {
			if o.queues[taskID] == q {
				delete(o.queues, taskID)
			}
		} else {
			q.since = time.Now()
		}
		e.done, e.id, e.err = true, got.ID, err
		wasQueued := e.queued
		if wasQueued {
			o.n--
			if len(o.resolved) >= 4*o.limit {
				// Tokens only live through an outage; a long one forgets the
				// oldest links rather than grow without bound.
				clear(o.resolved)
			}
			o.resolved[e.token] = got.ID
		}
		pending := o.n
		o.mu.Unlock()
		if !wasQueued {
			continue
		}
		s.m.pending.Set(float64(pending))
		if err != nil {
			s.m.dropped.WithLabelValues("rejected").Inc()
			s.log.Error("POD EVENT DROPPED: the database refused a kept pod event", slog.String("task_id", taskID),
				slog.String("type", ev.Type), slog.Any("data", ev.Data), slog.Any("error", err))
			continue
		}
		s.log.Info("kept pod event written", slog.String("task_id", taskID), slog.String("type", ev.Type),
			slog.String("event_id", got.ID), slog.Int("pending", pending))
	}
}

// flushAll makes one pass over the tasks with queued facts and reports
// whether none is left. It stops at the first task the store cannot take:
// the store is still down for the others too.
func (s *Supervisor) flushAll(ctx context.Context) bool {
	for _, id := range s.out.pendingTasks() {
		if err := s.flushTask(ctx, id); err != nil {
			return false
		}
	}
	return s.out.pending() == 0
}

// retryOutbox is the goroutine that writes kept facts once the store is
// back: it tries every StoreRetryMin while facts wait, backing off (doubling
// up to StoreRetryMax) while the store stays unreachable. It ends with s.ctx.
func (s *Supervisor) retryOutbox() {
	defer s.wg.Done()
	delay := s.cfg.StoreRetryMin
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		if s.out.pending() == 0 {
			delay = s.cfg.StoreRetryMin
			select {
			case <-s.ctx.Done():
				return
			case <-s.out.wake:
			}
		}
		timer.Reset(delay)
		select {
		case <-s.ctx.Done():
			return
		case <-timer.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RecordTimeout)
		ok := s.flushAll(ctx)
		cancel()
		if ok {
			delay = s.cfg.StoreRetryMin
			s.log.Info("pod event outbox drained")
			continue
		}
		delay = min(2*delay, s.cfg.StoreRetryMax)
	}
}

// drainOutbox is Shutdown's last attempt to write what waits, within ctx;
// whatever still waits after it is dropped and logged, one line per fact.
func (s *Supervisor) drainOutbox(ctx context.Context) {
	o := s.out
	if o.pending() == 0 {
		return
	}
	s.flushAll(ctx)
	o.mu.Lock()
	lost := 0
	for id, q := range o.queues {
		kept := q.entries[:0]
		for _, e := range q.entries {
			if !e.queued {
				kept = append(kept, e) // a write in flight: its caller decides
				continue
			}
			lost++
			s.log.Error("POD EVENT DROPPED: shutting down with the database unreachable",
				slog.String("task_id", id), slog.String("type", e.ev.Type), slog.Any("data", e.ev.Data))
		}
		q.entries = kept
		if len(kept) == 0 {
			delete(o.queues, id)
		}
	}
	o.n = 0
	o.mu.Unlock()
	s.m.pending.Set(0)
	s.m.dropped.WithLabelValues("shutdown").Add(float64(lost))
}
