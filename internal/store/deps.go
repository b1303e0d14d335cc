package store

import (
	"context"
	"fmt"

	"gorm.io/gorm"
)

// task_dependencies holds one row per (dependency, dependent) pair, keyed by
// the dependency first (migration 00010): the open dependents of a task that
// completes or is cancelled are an index range, not a text match over every
// task's depends_on column. Every write of a task row whose dependencies
// change writes them in the same transaction (writeDeps); a reprojection
// rebuilds them with the row.

// writeDeps replaces the task's rows in task_dependencies with deps, in tx
// (the transaction that writes the task row). replace is false for a task
// row just created (it has none yet).
func writeDeps(tx *gorm.DB, taskID string, deps []string, replace bool) error {
	if replace {
		if err := tx.Exec(`DELETE FROM task_dependencies WHERE task_id = ?`, taskID).Error; err != nil {
			return err
		}
	}
	seen := make(map[string]bool, len(deps))
	for _, d := range deps {
		if seen[d] || !validID(d) {
			continue
		}
		seen[d] = true
		if err := tx.Exec(`INSERT INTO task_dependencies (depends_on, task_id) VALUES (?, ?)`, d, taskID).Error; err != nil {
			return err
		}
	}
	return nil
}

// sameDeps reports whether two dependency lists are the same list.
func sameDeps(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// dependentsQuery finds the open dependents of a task.
const dependentsQuery = `SELECT t.id FROM task_dependencies d JOIN tasks t ON t.id = d.task_id
	WHERE d.depends_on = ? AND t.closed_at IS NULL ORDER BY t.created_at, t.id LIMIT ?`

// Dependents returns the open tasks that depend on taskID, oldest first, at
// most maxDispatchScan: an index range of task_dependencies joined to the
// task rows by primary key.
func (s *Store) Dependents(ctx context.Context, taskID string) ([]string, error) {
	if !validID(taskID) {
		return nil, nil
	}
	var ids []string
	if err := s.read.WithContext(ctx).Raw(dependentsQuery, taskID, maxDispatchScan).Scan(&ids).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: dependents: %w", err))
	}
	return ids, nil
}
