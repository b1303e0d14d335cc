package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// SaveLease records that owner runs the task's pod, with the reattach data
// (JSON). It replaces owner's earlier lease of the task. Returns ipa.ErrLeaseHeld
// (ECONFLICT) when another owner holds the task's lease: a pod has exactly one owner, so
// a second instance's start is refused. ENOTFOUND for an unknown task.
func (s *Store) SaveLease(ctx context.Context, owner, taskID string, data []byte, now time.Time) error {
	if !validID(taskID) {
		return ipa.TaskNotFound(taskID)
	}
	// The upsert only overwrites a row the same owner holds; a row of another
	// owner leaves zero rows affected. The lease is the pod's scheduling
	// slot from now on: a slot granted to it in the queue goes in the same
	// transaction, so the slot is never counted twice nor missed.
	held := false
	err := s.write.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Exec(`INSERT INTO pod_leases (task_id, owner, lease, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (task_id) DO UPDATE SET lease = excluded.lease, updated_at = excluded.updated_at
		WHERE pod_leases.owner = excluded.owner`, taskID, owner, string(data), now.UnixNano())
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			held = true
			return nil
		}
		return tx.Exec(`DELETE FROM pod_queue WHERE task_id = ?`, taskID).Error
	})
	if err != nil {
		return s.wrap(fmt.Errorf("store: save lease: %w", err))
	}
	if held {
		return ipa.ErrLeaseHeld
	}
	return nil
}

// DeleteLease drops owner's lease of the task; a missing lease is not an
// error, and another owner's lease is left alone.
func (s *Store) DeleteLease(ctx context.Context, owner, taskID string) error {
	if !validID(taskID) {
		return nil
	}
	if err := s.write.WithContext(ctx).Exec(`DELETE FROM pod_leases WHERE task_id = ? AND owner = ?`, taskID, owner).Error; err != nil {
		return s.wrap(fmt.Errorf("store: delete lease: %w", err))
	}
	return nil
}

// ListLeases returns the reattach data of every lease owner holds.
func (s *Store) ListLeases(ctx context.Context, owner string) ([][]byte, error) {
	var rows []struct{ Lease string }
	if err := s.read.WithContext(ctx).Raw(`SELECT lease FROM pod_leases WHERE owner = ? ORDER BY task_id`, owner).Scan(&rows).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: list leases: %w", err))
	}
	out := make([][]byte, len(rows))
	for i, r := range rows {
		out[i] = []byte(r.Lease)
	}
	return out, nil
}
