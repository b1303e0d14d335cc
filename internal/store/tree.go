package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Parent and child tasks, and deadlines.
//
// Two rules keep a closed parent from ever having an open child, whatever
// commits first: a child is created only if its parent is open, checked in
// the creating transaction; and a task closes only if it has no open child,
// checked in the closing transaction. On PostgreSQL both transactions lock
// the parent's row (FOR SHARE when creating a child, FOR UPDATE when
// appending to the parent), so they serialize and each sees the other's
// outcome; SQLite's single writer serializes them anyway.

// checkParent returns EINVALID (INVALID_PARENT) unless the task id exists and
// is open, and holds a share lock on it (PostgreSQL) until tx ends.
func (s *Store) checkParent(tx *gorm.DB, id string) error {
	if !validID(id) {
		return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidParent, "No parent task with id %q.", id)
	}
	q := `SELECT status FROM tasks WHERE id = ?`
	if s.postgres() {
		q += ` FOR SHARE`
	}
	var st []string
	if err := tx.Raw(q, id).Scan(&st).Error; err != nil {
		return err
	}
	if len(st) == 0 {
		return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidParent, "No parent task with id %q.", id)
	}
	if ipa.TaskStatus(st[0]).Closed() {
		return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidParent, "The parent task %s is closed (%s); a child needs an open parent.", id, st[0])
	}
	return nil
}

// refuseOpenChildren returns CONFLICT (OPEN_CHILDREN) when the task has a
// child that is still open. Called in the transaction that would close it,
// after its row is locked.
func (s *Store) refuseOpenChildren(tx *gorm.DB, id string) error {
	var n []int
	if err := tx.Raw(`SELECT 1 FROM tasks WHERE parent_id = ? AND closed_at IS NULL LIMIT 1`, id).Scan(&n).Error; err != nil {
		return err
	}
	if len(n) > 0 {
		return ipa.Errorf(ipa.ECONFLICT, ipa.ReasonOpenChildren, "The task has open child tasks; complete or cancel them first.")
	}
	return nil
}

// dueTasksQuery matches the partial index tasks_open_deadline. SQLite,
// having no statistics on it, would rather range over tasks_deadline, which
// also holds every closed task's deadline, so it is told which index to use.
func (s *Store) dueTasksQuery() string {
	from := `tasks`
	if !s.postgres() {
		from = `tasks INDEXED BY tasks_open_deadline`
	}
	return `SELECT ` + taskColumns + ` FROM ` + from + `
	WHERE deadline <= ? AND closed_at IS NULL ORDER BY deadline, id LIMIT ?`
}

// DueTasks returns up to limit open tasks whose deadline is at or before now,
// earliest deadline first, from the index of open deadlines. Returns
// EUNAVAILABLE when the database is unreachable.
func (s *Store) DueTasks(ctx context.Context, now time.Time, limit int) ([]*ipa.Task, error) {
	var rows []taskRow
	err := s.read.WithContext(ctx).Raw(s.dueTasksQuery(), nanos(now), limit).Scan(&rows).Error
	if err != nil {
		return nil, s.wrap(fmt.Errorf("store: due tasks: %w", err))
	}
	out := make([]*ipa.Task, len(rows))
	for i, r := range rows {
		if out[i], err = r.task(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
