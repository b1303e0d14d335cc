package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// errExisting rolls a CreateTask back when its idempotency key was seen before.
var errExisting = errors.New("store: idempotency key exists")

// CreateTask writes the idempotency key (when given), the stream, the
// task_created event and the task row in one transaction. When the actor used
// the key before, it writes nothing and returns the first task with Existing
// set. Returns a plain error for a TaskID that is not a UUID or a duplicate
// TaskID, and EUNAVAILABLE when the database is unreachable.
func (s *Store) CreateTask(ctx context.Context, req ipa.CreateTaskRequest) (ipa.CreateTaskResult, error) {
	if !validID(req.TaskID) {
		return ipa.CreateTaskResult{}, fmt.Errorf("store: create task: id %q is not a UUID", req.TaskID)
	}
	data, err := json.Marshal(req.Created)
	if err != nil {
		return ipa.CreateTaskResult{}, fmt.Errorf("store: create task: encode data: %w", err)
	}
	now := stamp(req.Now)
	ev := ipa.Event{
		ID: newID(), TaskID: req.TaskID, Version: 1, Type: ipa.EventTaskCreated, Data: data,
		ActorID: req.Actor, CorrelationID: req.CorrelationID, OccurredAt: now,
	}
	task := &ipa.Task{}
	if err := ipa.Apply(task, ev); err != nil {
		return ipa.CreateTaskResult{}, err
	}
	row, err := taskToRow(task)
	if err != nil {
		return ipa.CreateTaskResult{}, err
	}

	var existing *ipa.Task
	events, err := s.submit(ctx, func(tx *gorm.DB, counts countDelta) ([]ipa.Event, error) {
		existing = nil
		if req.IdempotencyKey != "" {
			// On a concurrent identical insert PostgreSQL waits here for the
			// other transaction: DO NOTHING once it commits, insert if it
			// rolls back. SQLite's single writer serializes anyway. An
			// identical request earlier in the same batch has committed
			// its savepoint: DO NOTHING, and its task row is visible.
			res := tx.Exec(`INSERT INTO idempotency_keys (actor_id, key, task_id, created_at) VALUES (?, ?, ?, ?)
				ON CONFLICT (actor_id, key) DO NOTHING`, req.Actor, req.IdempotencyKey, req.TaskID, nanos(now))
			if res.Error != nil {
				return nil, res.Error
			}
			if res.RowsAffected == 0 {
				t, err := keyTask(tx, req.Actor, req.IdempotencyKey)
				if err != nil {
					return nil, err
				}
				existing = t
				return nil, errExisting
			}
		}
		if req.Created.ParentID != "" {
			if err := s.checkParent(tx, req.Created.ParentID); err != nil {
				return nil, err
			}
		}
		stream := streamRow{ID: req.TaskID, Type: ipa.StreamTypeTask, Version: 1, CreatedAt: nanos(now), UpdatedAt: nanos(now)}
		if err := tx.Create(&stream).Error; err != nil {
			return nil, err
		}
		if err := tx.Create(&row).Error; err != nil {
			return nil, err
		}
		counts.move(nil, &row)
		if err := writeLabels(tx, row, task.Labels, false); err != nil {
			return nil, err
		}
		if err := writeDeps(tx, row.ID, task.DependsOn, false); err != nil {
			return nil, err
		}
		return []ipa.Event{ev}, nil
	})
	if errors.Is(err, errExisting) {
		return ipa.CreateTaskResult{Task: existing, Existing: true}, nil
	}
	var ie *ipa.Error
	if errors.As(err, &ie) {
		return ipa.CreateTaskResult{}, err
	}
	if err != nil {
		return ipa.CreateTaskResult{}, s.wrap(fmt.Errorf("store: create task: %w", err))
	}
	return ipa.CreateTaskResult{Task: task, Events: events}, nil
}

// keyTask reads the task an idempotency key points to.
func keyTask(tx *gorm.DB, actor, key string) (*ipa.Task, error) {
	var rows []taskRow
	err := tx.Raw(`SELECT `+taskColumns+` FROM tasks WHERE id = (SELECT task_id FROM idempotency_keys WHERE actor_id = ? AND key = ?)`, actor, key).
		Scan(&rows).Error
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("store: idempotency key of %q points to no task", actor)
	}
	return rows[0].task()
}

// Append runs req.Decide on the task's current row and appends the events it
// returns, updating the stream and the row, in one transaction. Returns
// ipa.TaskNotFound when there is no such task, ipa.VersionConflict when
// ExpectedVersion is stale or another writer got in first, Decide's error
// unchanged when it fails (nothing is written), EUNAVAILABLE when the database
// is unreachable or the store closed.
//
// The transaction may be shared with other writes (see batch.go): Decide
// runs on the store's writer goroutine, may run more than once when a shared
// transaction has to be retried, and must not call the store's writes.
func (s *Store) Append(ctx context.Context, req ipa.AppendRequest) (ipa.AppendResult, error) {
	if req.Decide == nil {
		return ipa.AppendResult{}, errors.New("store: append: no Decide")
	}
	if !validID(req.TaskID) {
		return ipa.AppendResult{}, ipa.TaskNotFound(req.TaskID)
	}
	var res ipa.AppendResult
	events, err := s.submit(ctx, func(tx *gorm.DB, counts countDelta) ([]ipa.Event, error) {
		res = ipa.AppendResult{}
		cur, err := s.currentTask(tx, req.TaskID)
		if err != nil {
			return nil, err
		}
		if req.ExpectedVersion != ipa.AnyVersion && req.ExpectedVersion != cur.Version {
			return nil, ipa.VersionConflict(req.ExpectedVersion, cur.Version)
		}
		if err := s.checkPodFence(ctx, tx, req.TaskID); err != nil {
			return nil, err
		}
		view := *cur
		news, err := req.Decide(&view)
		if err != nil {
			return nil, decideError{err}
		}
		if len(news) == 0 {
			res = ipa.AppendResult{Task: cur}
			return nil, nil
		}
		next, events, err := fold(cur, news, req)
		if err != nil {
			return nil, err
		}
		if err := updateStream(tx, cur, next, req.ExpectedVersion); err != nil {
			return nil, err
		}
		if !cur.Status.Closed() && next.Status.Closed() {
			if err := s.refuseOpenChildren(tx, cur.ID); err != nil {
				return nil, err
			}
		}
		if err := updateTask(tx, cur, next); err != nil {
			return nil, err
		}
		if err := projectRequests(tx, cur, next, events); err != nil {
			return nil, err
		}
		moveCounts(counts, cur, next)
		res = ipa.AppendResult{Task: next}
		return events, nil
	})
	var de decideError
	switch {
	case errors.As(err, &de):
		return ipa.AppendResult{}, de.err
	case err == nil:
		res.Events = events
		return res, nil
	}
	var ie *ipa.Error
	if errors.As(err, &ie) {
		return ipa.AppendResult{}, err
	}
	return ipa.AppendResult{}, s.wrap(fmt.Errorf("store: append to %s: %w", req.TaskID, err))
}

// decideError carries a Decide failure through the writer loop, so that it
// reaches the caller unchanged and is never mistaken for a database error.
type decideError struct{ err error }

func (e decideError) Error() string { return e.err.Error() }

// currentTask reads the task row, locking it on PostgreSQL until the
// transaction ends so concurrent appends to one task queue instead of racing.
func (s *Store) currentTask(tx *gorm.DB, id string) (*ipa.Task, error) {
	q := `SELECT ` + taskColumns + ` FROM tasks WHERE id = ?`
	if s.postgres() {
		q += ` FOR UPDATE`
	}
	var rows []taskRow
	if err := tx.Raw(q, id).Scan(&rows).Error; err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, ipa.TaskNotFound(id)
	}
	return rows[0].task()
}

// fold turns the decided events into stored events on top of cur and returns
// the task after them.
func fold(cur *ipa.Task, news []ipa.NewEvent, req ipa.AppendRequest) (*ipa.Task, []ipa.Event, error) {
	next := *cur
	now := stamp(req.Now)
	events := make([]ipa.Event, len(news))
	for i, ne := range news {
		data := []byte("{}")
		if ne.Data != nil {
			var err error
			if data, err = json.Marshal(ne.Data); err != nil {
				return nil, nil, fmt.Errorf("encode %s data: %w", ne.Type, err)
			}
		}
		id := ne.ID
		if id == "" {
			id = newID()
		}
		events[i] = ipa.Event{
			ID: id, TaskID: cur.ID, Version: cur.Version + int64(i) + 1, Type: ne.Type, Data: data,
			ActorID: req.Actor, CorrelationID: req.CorrelationID, CausationID: ne.CausationID, OccurredAt: now,
		}
		if err := ipa.Apply(&next, events[i]); err != nil {
			return nil, nil, err
		}
	}
	return &next, events, nil
}

// updateStream moves the stream from cur's version to next's. The WHERE on
// the old version makes it optimistic: if anything else moved the stream, no
// row matches and the append fails with a conflict instead of overwriting.
func updateStream(tx *gorm.DB, cur, next *ipa.Task, expected int64) error {
	res := tx.Exec(`UPDATE streams SET version = ?, updated_at = ? WHERE id = ? AND version = ?`,
		next.Version, nanos(next.UpdatedAt), cur.ID, cur.Version)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		var now int64
		if err := tx.Raw(`SELECT version FROM streams WHERE id = ?`, cur.ID).Scan(&now).Error; err != nil {
			return err
		}
		if expected == ipa.AnyVersion {
			expected = cur.Version
		}
		return ipa.VersionConflict(expected, now)
	}
	return nil
}

// updateTask writes t's row, and its task_labels rows: replaced when its
// labels differ from cur's, else their copies of the row's list columns
// brought up to date (updated_at moves with every event).
func updateTask(tx *gorm.DB, cur, t *ipa.Task) error {
	r, err := taskToRow(t)
	if err != nil {
		return err
	}
	err = tx.Exec(`UPDATE tasks SET title = ?, title_lower = ?, description = ?, status = ?, phase = ?, runtime = ?,
		runtime_config = ?, restart_policy = ?, metadata = ?, pod_state = ?, created_by = ?, created_at = ?,
		updated_at = ?, closed_at = ?, version = ?, archived = ?, labels = ?, parent_id = ?, deadline = ?, priority = ?, depends_on = ? WHERE id = ?`,
		r.Title, r.TitleLower, r.Description, r.Status, r.Phase, r.Runtime, r.RuntimeConfig, r.RestartPolicy,
		r.Metadata, r.PodState, r.CreatedBy, r.CreatedAt, r.UpdatedAt, r.ClosedAt, r.Version, r.Archived,
		r.Labels, r.ParentID, r.Deadline, r.Priority, r.DependsOn, r.ID).Error
	if err == nil && cur.Priority != t.Priority {
		// A queued pod moves with its task's priority.
		err = tx.Exec(`UPDATE pod_queue SET priority = ? WHERE task_id = ?`, t.Priority, t.ID).Error
	}
	if err == nil && !sameDeps(cur.DependsOn, t.DependsOn) {
		err = writeDeps(tx, t.ID, t.DependsOn, true)
	}
	switch {
	case err != nil:
		return err
	case !cur.Labels.Equal(t.Labels):
		return writeLabels(tx, r, t.Labels, true)
	case len(t.Labels) == 0:
		return nil
	}
	old, err := taskToRow(cur)
	if err != nil {
		return err
	}
	return syncLabels(tx, old, r)
}

// allocatePositions reserves n global positions and returns the last one.
//
// Why a counter row and not a sequence (bigserial): a sequence hands numbers
// out immediately and outside the transaction, so tx A can take 10, tx B take
// 11 and commit first; a reader tailing "position > last" sees 11, moves past
// it, and never sees 10 when A commits. Here the UPDATE row-locks the single
// counter row until this transaction commits or rolls back (a rollback also
// returns the numbers, so no gaps). The next writer's UPDATE waits on that
// lock and reads the counter only after we are visible, so positions commit
// strictly in order and any snapshot a reader takes holds a gap-free prefix
// of them.
//
// The lock serializes the tail of every write transaction, so it is taken as
// the last step, after all other writes, just before the event inserts and
// COMMIT — and only once per batch: CreateTask and Append go through the
// store's writer loop (batch.go), which runs whatever writes are queued in
// one transaction, each in its own savepoint, and allocates the positions of
// all of them here at the end. Held once per batch, the lock no longer makes
// every write wait for its own WAL flush: a batch shares one. Other
// instances' batches still queue on the lock, so the order argument above is
// unchanged. On SQLite the single writer connection serializes whole
// transactions already; the counter keeps one code path for both.
func (s *Store) allocatePositions(tx *gorm.DB, n int) (int64, error) {
	const q = `UPDATE positions SET last = last + ? WHERE id = 1 RETURNING last`
	db := tx
	if s.naivePositions {
		// Test only: allocate in its own autocommit transaction, the way a
		// sequence does, so the tailing test can show it loses events.
		db = s.write.WithContext(tx.Statement.Context)
	}
	var last int64
	if err := db.Raw(q, n).Scan(&last).Error; err != nil {
		return 0, err
	}
	if last == 0 {
		return 0, errors.New("store: positions counter row is missing")
	}
	return last, nil
}

// inTx runs fn in a write transaction of its own (not through the writer
// loop): committed when fn returns nil, rolled back otherwise (and on panic).
// The error is fn's, or the commit's. Writes that append events must go
// through submit instead.
func (s *Store) inTx(ctx context.Context, fn func(tx *gorm.DB) error) (err error) {
	span := s.startTxSpan([]*writeReq{{ctx: ctx}})
	defer func() { endSpan(span, err) }()
	return s.write.WithContext(ctx).Transaction(fn)
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// validID reports whether id is a UUID in its canonical form, the only form
// the store writes (and PostgreSQL's uuid columns accept).
func validID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && u.String() == id
}

// stamp returns the time events are recorded at: the caller's, or when it
// gave none, now. Append folds inside the write transaction after the task's
// row is locked, so stamping there keeps occurredAt in version order and
// close to the commit.
func stamp(given time.Time) time.Time {
	if given.IsZero() {
		return time.Now().UTC()
	}
	return given.UTC()
}
