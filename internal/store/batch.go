package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Application-level group commit.
//
// Every CreateTask and Append is a writeReq handed to the store's writer
// loop, one goroutine per Store. The loop takes whatever is queued (up to
// maxBatch requests, never waiting for more) and runs it as one database
// transaction:
//
//	BEGIN
//	  SAVEPOINT w; request 1's reads and writes, except its events
//	  SAVEPOINT w; request 2's …   (ROLLBACK TO SAVEPOINT w when it fails)
//	  …
//	  INSERT INTO task_counts …     the batch's moves of the task counters
//	  UPDATE positions …            one counter bump for all the batch's events
//	  INSERT INTO events …          the batch's events, in request order
//	  SELECT pg_notify(…)           one notice per request that wrote, in position order
//	COMMIT
//
// (on PostgreSQL the last four are one statement: batchtail.go)
//
// So the position counter is locked once per batch instead of once per write,
// and the batch's writes share one commit (one WAL flush on PostgreSQL, one
// WAL append on SQLite). A request that fails — its Decide errs, its version
// is stale, its task is missing, a statement of its own fails — is rolled back
// to its savepoint and gets its error; the others commit. A batch of one
// request takes no savepoint: it is exactly the transaction a write ran on
// its own before batching.
//
// When the batch transaction as a whole fails before COMMIT (a deadlock with
// another instance's batch, a failed event insert, …) nothing of it was
// written, and each of its requests runs again on its own, as a batch of one;
// so each gets the outcome it would have had alone, and Decide may run twice
// (it is pure: it only looks at the row it is given). Deadlocks and
// serialization failures of a batch of one are retried a few times. When the
// database is unreachable, or COMMIT itself fails (the outcome is then
// unknown, as it was before batching), every request of the batch gets that
// error.
//
// Callers wait for the result after COMMIT, so every returned event carries
// its final position. A caller whose ctx ends while its request is still
// queued withdraws it and gets ctx.Err(); once the loop has taken a request
// into a batch, the request completes and the caller waits for it.

// maxBatch bounds the requests in one transaction. Each writes in its own
// subtransaction; PostgreSQL caches 64 subtransaction ids per backend before
// it overflows to pg_subtrans, which slows every other backend's snapshots.
const maxBatch = 64

// maxRetries bounds how often a lone request is retried after a deadlock or a
// serialization failure.
const maxRetries = 3

// Request states.
const (
	reqQueued int32 = iota
	reqTaken
	reqWithdrawn
)

// writeReq is one write waiting for, or run by, the writer loop.
type writeReq struct {
	ctx context.Context
	// apply does the request's reads and writes in tx, except inserting its
	// events, which it returns with positions unset, and moving the task
	// counters, which it records in counts (see counts.go). An error fails
	// this request only (errExisting is an outcome, not a failure: nothing to
	// write). It may run more than once; each run starts from scratch.
	apply func(tx *gorm.DB, counts countDelta) ([]ipa.Event, error)

	state atomic.Int32
	done  chan struct{}
	// Outcome, set by the loop before done is closed.
	events   []ipa.Event // with final positions
	err      error
	panicked any // apply panicked with this; re-panicked in the caller
}

// writer is the state of a Store's writer loop.
type writer struct {
	mu     sync.Mutex
	cond   *sync.Cond
	queue  []*writeReq
	closed bool
	exited chan struct{} // closed when the loop returns
}

// errClosed is what requests get after Close; s.wrap makes it EUNAVAILABLE.
var errClosed = fmt.Errorf("store closed: %w", sql.ErrConnDone)

// startWriter starts the writer loop; stopWriter ends it.
func (s *Store) startWriter() {
	s.w = &writer{exited: make(chan struct{})}
	s.w.cond = sync.NewCond(&s.w.mu)
	go s.writeLoop()
}

// stopWriter lets the batch in flight commit and deliver its results, fails
// the requests still queued with errClosed, and waits for the loop to return.
// Later writes fail with errClosed. Safe to call more than once.
func (s *Store) stopWriter() {
	if s.w == nil {
		return
	}
	s.w.mu.Lock()
	s.w.closed = true
	s.w.cond.Broadcast()
	s.w.mu.Unlock()
	<-s.w.exited
}

// submit queues a write and waits for its outcome.
func (s *Store) submit(ctx context.Context, apply func(tx *gorm.DB, counts countDelta) ([]ipa.Event, error)) ([]ipa.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &writeReq{ctx: ctx, apply: apply, done: make(chan struct{})}
	w := s.w
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, errClosed
	}
	w.queue = append(w.queue, r)
	w.cond.Signal()
	w.mu.Unlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqWithdrawn) {
			return nil, ctx.Err()
		}
		<-r.done // taken into a batch: it completes
	}
	if r.panicked != nil {
		panic(r.panicked)
	}
	return r.events, r.err
}

func (s *Store) writeLoop() {
	w := s.w
	defer close(w.exited)
	for {
		w.mu.Lock()
		for len(w.queue) == 0 && !w.closed {
			w.cond.Wait()
		}
		if w.closed {
			rest := w.queue
			w.queue = nil
			w.mu.Unlock()
			for _, r := range rest {
				if r.state.CompareAndSwap(reqQueued, reqTaken) {
					r.finish(nil, errClosed)
				}
			}
			return
		}
		n := min(len(w.queue), maxBatch)
		batch := make([]*writeReq, 0, n)
		for _, r := range w.queue[:n] {
			if !r.state.CompareAndSwap(reqQueued, reqTaken) {
				continue // withdrawn: its caller is gone
			}
			if err := r.ctx.Err(); err != nil {
				r.finish(nil, err)
				continue
			}
			batch = append(batch, r)
		}
		w.queue = append(w.queue[:0:0], w.queue[n:]...)
		w.mu.Unlock()
		s.runBatch(batch)
	}
}

func (r *writeReq) finish(events []ipa.Event, err error) {
	r.events, r.err = events, err
	close(r.done)
}

// runBatch commits batch and delivers every request's outcome.
func (s *Store) runBatch(batch []*writeReq) {
	if len(batch) == 0 {
		return
	}
	if s.onBatch != nil {
		s.onBatch(len(batch))
	}
	err := s.commitBatch(batch)
	switch {
	case err == nil:
	case len(batch) > 1 && !errors.Is(err, errCommit) && !unreachable(err):
		// Nothing of the batch was written: run each request on its own.
		for _, r := range batch {
			s.runAlone(r)
		}
		return
	case len(batch) == 1 && retryable(err):
		s.runAlone(batch[0])
		return
	default:
		for _, r := range batch {
			r.events, r.err, r.panicked = nil, err, nil
		}
	}
	for _, r := range batch {
		r.finish(r.events, r.err)
	}
}

// runAlone runs one request in its own transaction, retrying deadlocks and
// serialization failures, and delivers its outcome.
func (s *Store) runAlone(r *writeReq) {
	var err error
	for range maxRetries + 1 {
		if err = s.commitBatch([]*writeReq{r}); err == nil || !retryable(err) {
			break
		}
	}
	if err != nil {
		r.events, r.err, r.panicked = nil, err, nil
	}
	r.finish(r.events, r.err)
}

// errCommit marks a failed COMMIT: the outcome is unknown, so the batch is
// not run again.
var errCommit = errors.New("store: commit")

// commitBatch runs batch in one transaction and sets each request's outcome.
// It returns an error only when the transaction as a whole failed (wrapping
// errCommit when COMMIT did); then no request's outcome counts.
func (s *Store) commitBatch(batch []*writeReq) (err error) {
	span := s.startTxSpan(batch)
	defer func() { endSpan(span, err) }()
	tx := s.write.WithContext(context.Background()).Begin()
	if tx.Error != nil {
		return tx.Error
	}
	committed := false
	defer func() {
		if !committed {
			tx.Rollback()
		}
	}()
	savepoints := len(batch) > 1
	total := 0
	counts := countDelta{}
	for _, r := range batch {
		r.events, r.err, r.panicked = nil, nil, nil
		if savepoints {
			if err := tx.Exec(`SAVEPOINT w`).Error; err != nil {
				return err
			}
		}
		moved := countDelta{}
		events, err := r.run(tx, moved)
		if err == nil {
			r.events = events
			total += len(events)
			counts.add(moved)
			continue
		}
		r.err = err
		if lost(err) {
			return err // the transaction is lost, not just this request
		}
		if !savepoints {
			return nil // the deferred rollback undoes the lone request
		}
		if err := tx.Exec(`ROLLBACK TO SAVEPOINT w`).Error; err != nil {
			return err
		}
	}
	if err := s.finishBatch(tx, batch, total, counts); err != nil {
		return err
	}
	if err := tx.Commit().Error; err != nil {
		committed = true // nothing to roll back any more
		return fmt.Errorf("%w: %w", errCommit, err)
	}
	committed = true
	return nil
}

// finishBatch moves the task counters (after every row lock, just before
// the position counter), then gives the batch's events their positions,
// inserts them and queues the commit notices: on PostgreSQL in one statement
// (batchtail.go), elsewhere one step at a time.
func (s *Store) finishBatch(tx *gorm.DB, batch []*writeReq, total int, counts countDelta) error {
	if total > 0 && s.postgres() && !s.naivePositions && tailFits(total, len(counts), len(batch)) {
		return s.finishBatchInOneStatement(tx, batch, total, counts)
	}
	if err := applyCounts(tx, counts); err != nil {
		return err
	}
	if total > 0 {
		return s.insertEvents(tx, batch, total)
	}
	return nil
}

// run applies r in tx, turning a panic into r.panicked (and an error).
func (r *writeReq) run(tx *gorm.DB, counts countDelta) (events []ipa.Event, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.panicked = p
			err = fmt.Errorf("store: write panicked: %v", p)
		}
	}()
	return r.apply(tx, counts)
}

// insertEvents gives the batch's events their global positions, in request
// order, and inserts them, then queues one commit notice per request that
// wrote. It must be the last thing a write transaction does before COMMIT.
func (s *Store) insertEvents(tx *gorm.DB, batch []*writeReq, total int) error {
	last, err := s.allocatePositions(tx, total)
	if err != nil {
		return err
	}
	assignPositions(batch, last, total)
	rows := make([]eventRow, 0, total)
	for _, r := range batch {
		if r.err == nil {
			for _, e := range r.events {
				rows = append(rows, eventToRow(e))
			}
		}
	}
	s.allocated(batch)
	if err := tx.CreateInBatches(&rows, 1000).Error; err != nil {
		return err
	}
	return s.notifyCommits(tx, batch)
}

// assignPositions gives the events of the batch's requests that wrote, in
// request order, the total positions that end at last.
func assignPositions(batch []*writeReq, last int64, total int) {
	next := last - int64(total) + 1
	for _, r := range batch {
		if r.err != nil {
			continue
		}
		for i := range r.events {
			r.events[i].Position = next
			next++
		}
	}
}

// allocated runs the test hook afterAllocate, between taking positions and
// COMMIT, for every request that wrote.
func (s *Store) allocated(batch []*writeReq) {
	if s.afterAllocate == nil {
		return
	}
	for _, r := range batch {
		if r.err == nil && len(r.events) > 0 {
			s.afterAllocate(r.ctx)
		}
	}
}

// lost reports whether a request's error means the whole transaction is
// lost: a deadlock, a serialization failure, the connection. Its own
// outcomes (Decide's errors, *ipa.Error, an existing idempotency key) never
// do.
func lost(err error) bool {
	var de decideError
	var ie *ipa.Error
	if errors.As(err, &de) || errors.As(err, &ie) || errors.Is(err, errExisting) {
		return false
	}
	return retryable(err) || unreachable(err)
}

// retryable reports a deadlock or serialization failure: the transaction was
// rolled back by the server and can run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}
