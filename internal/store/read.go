package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Read limits.
const (
	maxTaskPage   = 10_000 // rows per FindTasks page
	maxEventsRead = 10_000 // events per ReadEvents call
	idChunk       = 500    // ids per IN list
)

// GetTask returns the task with the given id. Returns ipa.TaskNotFound when
// there is none (also for an id that is not a UUID), EUNAVAILABLE when the
// database is unreachable.
func (s *Store) GetTask(ctx context.Context, id string) (*ipa.Task, error) {
	if !validID(id) {
		return nil, ipa.TaskNotFound(id)
	}
	var rows []taskRow
	if err := s.read.WithContext(ctx).Raw(`SELECT `+taskColumns+` FROM tasks WHERE id = ?`, id).Scan(&rows).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: get task: %w", err))
	}
	if len(rows) == 0 {
		return nil, ipa.TaskNotFound(id)
	}
	return rows[0].task()
}

// GetTasks returns the tasks that exist among ids, keyed by id; missing and
// malformed ids are simply absent. Returns EUNAVAILABLE when the database is
// unreachable.
func (s *Store) GetTasks(ctx context.Context, ids []string) (map[string]*ipa.Task, error) {
	out := make(map[string]*ipa.Task, len(ids))
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		if validID(id) {
			valid = append(valid, id)
		}
	}
	for len(valid) > 0 {
		chunk := valid[:min(idChunk, len(valid))]
		valid = valid[len(chunk):]
		var rows []taskRow
		if err := s.read.WithContext(ctx).Raw(`SELECT `+taskColumns+` FROM tasks WHERE id IN ?`, chunk).Scan(&rows).Error; err != nil {
			return nil, s.wrap(fmt.Errorf("store: get tasks: %w", err))
		}
		for _, r := range rows {
			t, err := r.task()
			if err != nil {
				return nil, err
			}
			out[t.ID] = t
		}
	}
	return out, nil
}

// FindTasks returns one page of the tasks passing q.Filter in q.Order, by
// keyset (never OFFSET): the page starts strictly after q.After, ties broken
// by id in the order's direction, and HasMore says whether a row follows.
// Every filter+order the API offers is served by an index range scan.
// Returns a plain error for a Limit outside 1..10000 or an unknown order
// field, EUNAVAILABLE when the database is unreachable.
func (s *Store) FindTasks(ctx context.Context, q ipa.TaskQuery) (ipa.TaskPage, error) {
	db, err := s.findQuery(s.read.WithContext(ctx), q)
	if err != nil {
		return ipa.TaskPage{}, err
	}
	rows, more, err := scanPage[taskRow](s, db, q.Limit, q.Last, "find tasks")
	if err != nil {
		return ipa.TaskPage{}, err
	}
	page := ipa.TaskPage{HasMore: more}
	page.Tasks = make([]*ipa.Task, len(rows))
	for i, r := range rows {
		var err error
		if page.Tasks[i], err = r.task(); err != nil {
			return ipa.TaskPage{}, err
		}
	}
	return page, nil
}

// findQuery builds FindTasks' query (Limit+1 rows) on db.
func (s *Store) findQuery(db *gorm.DB, q ipa.TaskQuery) (*gorm.DB, error) {
	if q.Limit <= 0 || q.Limit > maxTaskPage {
		return nil, fmt.Errorf("store: find tasks: limit %d outside 1..%d", q.Limit, maxTaskPage)
	}
	order := q.Order
	if order.Field == "" {
		order = ipa.DefaultTaskOrder
	}
	col, err := orderColumn(order.Field)
	if err != nil {
		return nil, err
	}
	dir, cmp, back := "ASC", ">", "<"
	if order.Descending {
		dir, cmp, back = "DESC", "<", ">"
	}
	// The columns the page is ordered and keyed by: the task row's, or for a
	// label selector the copies in the driving label's task_labels rows.
	id, cols := "id", taskColumns
	if labelDriven(q.Filter) {
		drive, err := s.rarestPair(db, q.Filter)
		if err != nil {
			return nil, err
		}
		db = s.labelPage(db, q.Filter, drive, order.Field)
		col, id, cols = "l."+col, "l.task_id", qualified("t", taskColumns)
	} else {
		db = s.filter(db.Table("tasks"), q.Filter)
	}
	key := func(k *ipa.TaskKey) any {
		if order.Field == ipa.OrderTitle {
			return k.Title
		}
		return nanos(k.Time)
	}
	if q.After != nil {
		// A row-value comparison: both SQLite and PostgreSQL turn it into the
		// start of an index range scan on (col, id).
		db = db.Where(fmt.Sprintf("(%s, %s) %s (?, ?)", col, id, cmp), key(q.After), afterID(q.After.ID))
	}
	if q.Before != nil {
		db = db.Where(fmt.Sprintf("(%s, %s) %s (?, ?)", col, id, back), key(q.Before), afterID(q.Before.ID))
	}
	if q.Last {
		// The same index, scanned from the other end.
		dir = map[string]string{"ASC": "DESC", "DESC": "ASC"}[dir]
	}
	return db.Select(cols).Order(fmt.Sprintf("%s %s, %s %s", col, dir, id, dir)).Limit(q.Limit + 1), nil
}

// labelDriven reports whether a page under f is read from task_labels: f
// selects by label, and not by parent (a parent's children are a range of
// their own index in every order, with labels checked per child).
func labelDriven(f ipa.TaskFilter) bool {
	return len(f.Labels) > 0 && f.ParentID == nil
}

// labelPage starts a label selector page in order field on db: the rows of
// task_labels holding the selector's pair for key drive that pass archived
// (and in UPDATED_AT order a single status, task_labels_status_updated) from
// their own copies, each joined to its task row by primary key, the other
// pairs checked per row on the primary key (task_id, key), the other filters
// on the task row. Ordered by the label rows' copy of the order column, this
// is a range scan of one of the task_labels_<order> indexes that stops after
// the page, however many tasks have the label.
func (s *Store) labelPage(db *gorm.DB, f ipa.TaskFilter, drive string, field ipa.TaskOrderField) *gorm.DB {
	// SQLite: CROSS JOIN keeps task_labels the outer table, whatever its
	// statistics say; PostgreSQL plans a CROSS JOIN with a WHERE like any
	// inner join, and finds this order itself.
	db = db.Table("task_labels AS l CROSS JOIN tasks AS t").Where("t.id = l.task_id").
		Where("l.key = ? AND l.value = ? AND l.archived = ?", drive, f.Labels[drive], f.Archived)
	rest := f
	rest.Labels = nil
	if len(f.Statuses) == 1 && field == ipa.OrderUpdatedAt {
		db = db.Where("l.status = ?", string(f.Statuses[0]))
		rest.Statuses = nil
	}
	for _, k := range f.Labels.Keys() {
		if k == drive {
			continue
		}
		if s.postgres() {
			// A semi-join, estimated from the pair's statistics.
			db = db.Where("EXISTS (SELECT 1 FROM task_labels AS o WHERE o.task_id = l.task_id AND o.key = ? AND o.value = ?)", k, f.Labels[k])
			continue
		}
		// The task's value for k, by primary key (task_id, key); no such
		// label is NULL, which equals nothing. (SQLite would run an EXISTS
		// on key and value as a range over every task with the pair.
		// PostgreSQL, the other way round, cannot estimate this one and
		// then sorts.)
		db = db.Where("(SELECT o.value FROM task_labels AS o WHERE o.task_id = l.task_id AND o.key = ?) = ?", k, f.Labels[k])
	}
	return s.rowFilter(db, rest, "t.")
}

// labelProbeCap bounds how many rows rarestPair counts per pair.
const labelProbeCap = 1000

// rarestPair returns the key of the selector's pair that the fewest tasks
// (archived as f asks) have, counting at most labelProbeCap rows of each
// from the index, and the only key of a one-pair selector without
// counting. A page in order driven by the rarest pair reads the fewest
// label rows to fill up; the others are checked per row. Returns
// EUNAVAILABLE when the database is unreachable.
func (s *Store) rarestPair(db *gorm.DB, f ipa.TaskFilter) (string, error) {
	keys := f.Labels.Keys()
	if len(keys) == 1 {
		return keys[0], nil
	}
	probe := db.Session(&gorm.Session{NewDB: true})
	if db.DryRun {
		// The page's SQL is being built, not run (an EXPLAIN): the probe
		// still has to run, since its answer shapes that SQL.
		probe = s.read.WithContext(db.Statement.Context)
	}
	best, fewest := keys[0], int64(labelProbeCap+1)
	for _, k := range keys {
		var n int64
		err := probe.Raw(`SELECT COUNT(*) FROM (SELECT 1 FROM task_labels
			WHERE key = ? AND value = ? AND archived = ? LIMIT ?) AS c`, k, f.Labels[k], f.Archived, labelProbeCap).Scan(&n).Error
		if err != nil {
			return "", s.wrap(fmt.Errorf("store: find tasks: %w", err))
		}
		if n < fewest {
			best, fewest = k, n
		}
		if n == 0 {
			break // nothing is rarer
		}
	}
	return best, nil
}

// qualified prefixes every column of a select list with table alias a.
func qualified(a, cols string) string {
	return a + "." + strings.ReplaceAll(cols, ", ", ", "+a+".")
}

// afterID makes a keyset id comparable with a uuid column: a malformed id
// (which no row has) is replaced by the nil UUID, the smallest one. Cursors
// are signed by the API, so this only guards against misuse.
func afterID(id string) string {
	if validID(id) {
		return id
	}
	return "00000000-0000-0000-0000-000000000000"
}

// CountTasks returns how many tasks pass f. Returns EUNAVAILABLE when the
// database is unreachable.
//
// A filter of only statuses, phases and archived is answered from the task
// counters (a few rows, see counts.go); any other filter counts the rows.
func (s *Store) CountTasks(ctx context.Context, f ipa.TaskFilter) (int64, error) {
	if countable(f) {
		return s.countFromCounters(ctx, f)
	}
	return s.countTasksScan(ctx, f)
}

func orderColumn(f ipa.TaskOrderField) (string, error) {
	switch f {
	case ipa.OrderCreatedAt:
		return "created_at", nil
	case ipa.OrderUpdatedAt:
		return "updated_at", nil
	case ipa.OrderTitle:
		return "title", nil
	}
	return "", fmt.Errorf("store: unknown task order %q", f)
}

// filter adds f's conditions with the meaning ipa.TaskFilter.Matches gives
// them. A single status or phase is an equality, so it is an index prefix.
func (s *Store) filter(db *gorm.DB, f ipa.TaskFilter) *gorm.DB {
	db = db.Where("archived = ?", f.Archived)
	db = s.rowFilter(db, f, "")
	// One semi-join per pair, each an index lookup on task_labels by (key,
	// value).
	for _, k := range f.Labels.Keys() {
		db = db.Where("id IN (SELECT task_id FROM task_labels WHERE key = ? AND value = ?)", k, f.Labels[k])
	}
	return db
}

// rowFilter adds f's conditions on the task row's own columns, prefixed by
// p (a table alias and a dot, or nothing): all but archived and labels.
func (s *Store) rowFilter(db *gorm.DB, f ipa.TaskFilter, p string) *gorm.DB {
	if len(f.Statuses) == 1 {
		db = db.Where(p+"status = ?", string(f.Statuses[0]))
	} else if len(f.Statuses) > 1 {
		db = db.Where(p+"status IN ?", strs(f.Statuses))
	}
	if len(f.Phases) == 1 {
		db = db.Where(p+"phase = ?", string(f.Phases[0]))
	} else if len(f.Phases) > 1 {
		db = db.Where(p+"phase IN ?", strs(f.Phases))
	}
	if f.CreatedAfter != nil {
		db = db.Where(p+"created_at > ?", nanos(*f.CreatedAfter))
	}
	if f.CreatedBefore != nil {
		db = db.Where(p+"created_at < ?", nanos(*f.CreatedBefore))
	}
	if f.CreatedBy != nil {
		db = db.Where(p+"created_by = ?", *f.CreatedBy)
	}
	if f.Runtime != nil {
		db = db.Where(p+"runtime = ?", *f.Runtime)
	}
	if f.TitleContains != nil && *f.TitleContains != "" {
		// title_lower is strings.ToLower(title), computed in Go, and the
		// needle is lowered the same way; a plain substring search (no LIKE,
		// so % and _ need no escaping) then agrees with Matches exactly.
		needle := strings.ToLower(*f.TitleContains)
		if s.postgres() {
			db = db.Where("strpos("+p+"title_lower, ?) > 0", needle)
		} else {
			db = db.Where("instr("+p+"title_lower, ?) > 0", needle)
		}
	}
	if f.IDPrefix != nil {
		// A range on the primary key, the same on text (SQLite) and uuid
		// (PostgreSQL) columns; the service refused malformed prefixes,
		// and one that slips through matches nothing.
		lo, hi, ok := ipa.IDPrefixRange(*f.IDPrefix)
		if !ok {
			lo, hi = "ffffffff-ffff-ffff-ffff-ffffffffffff", "00000000-0000-0000-0000-000000000000"
		}
		db = db.Where(p+"id BETWEEN ? AND ?", lo, hi)
	}
	if len(f.PodStates) == 1 {
		db = db.Where(p+"pod_state = ?", string(f.PodStates[0]))
	} else if len(f.PodStates) > 1 {
		db = db.Where(p+"pod_state IN ?", strs(f.PodStates))
	}
	if f.ParentID != nil {
		// A malformed id is no task's parent; the nil UUID keeps the
		// parameter a valid uuid on PostgreSQL and matches nothing.
		db = db.Where(p+"parent_id = ?", afterID(*f.ParentID))
	}
	if f.DeadlineBefore != nil {
		db = db.Where(p+"deadline < ?", nanos(*f.DeadlineBefore))
	}
	return db
}

func strs[T ~string](in []T) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = string(v)
	}
	return out
}

// ReadEvents returns events in order: one stream's by version after q.After
// when q.TaskID is set, else the global feed by position after q.After; with
// q.Newest the last events instead, newest first; only q.Types when given; at most q.Limit (capped at 10000). An unknown or
// malformed TaskID reads nothing. Returns a plain error for a Limit below 1,
// EUNAVAILABLE when the database is unreachable.
func (s *Store) ReadEvents(ctx context.Context, q ipa.EventQuery) ([]ipa.Event, error) {
	if q.Limit <= 0 {
		return nil, errors.New("store: read events: limit must be positive")
	}
	db := s.read.WithContext(ctx).Table("events").Select(eventColumns)
	switch {
	case q.TaskID != "" && !validID(q.TaskID):
		return nil, nil
	case q.TaskID != "" && q.Newest:
		db = db.Where("stream_id = ?", q.TaskID).Order("version DESC")
	case q.TaskID != "":
		db = db.Where("stream_id = ? AND version > ?", q.TaskID, q.After).Order("version")
	case q.Newest:
		db = db.Order("position DESC")
	default:
		db = db.Where("position > ?", q.After).Order("position")
	}
	if len(q.Types) > 0 {
		db = db.Where("type IN ?", q.Types)
	}
	var rows []eventRow
	if err := db.Limit(min(q.Limit, maxEventsRead)).Scan(&rows).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: read events: %w", err))
	}
	out := make([]ipa.Event, len(rows))
	for i, r := range rows {
		out[i] = r.event()
	}
	return out, nil
}

const eventColumns = "position, id, stream_id, version, type, data, actor_id, correlation_id, causation_id, occurred_at"

// CountEvents returns how many events the task's stream holds, only of types
// when given. Returns EUNAVAILABLE when the database is unreachable.
func (s *Store) CountEvents(ctx context.Context, taskID string, types []string) (int64, error) {
	if !validID(taskID) {
		return 0, nil
	}
	db := s.read.WithContext(ctx).Table("events").Where("stream_id = ?", taskID)
	if len(types) > 0 {
		db = db.Where("type IN ?", types)
	}
	var n int64
	if err := db.Count(&n).Error; err != nil {
		return 0, s.wrap(fmt.Errorf("store: count events: %w", err))
	}
	return n, nil
}

// HeadPosition returns the highest committed global position, 0 when no
// event was ever written. Returns EUNAVAILABLE when the database is
// unreachable.
func (s *Store) HeadPosition(ctx context.Context) (int64, error) {
	// The counter only moves in committed transactions (see allocatePositions).
	var last int64
	if err := s.read.WithContext(ctx).Raw(`SELECT last FROM positions WHERE id = 1`).Scan(&last).Error; err != nil {
		return 0, s.wrap(fmt.Errorf("store: head position: %w", err))
	}
	return last, nil
}
