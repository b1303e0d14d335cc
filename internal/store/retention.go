package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Deleting history. A task's whole stream goes at once: its events, its
// row, its lease and its idempotency keys, in one transaction, and only for
// a closed task. Global positions are never reused, so they stay strictly
// increasing; the log simply has holes where deleted streams were (see
// internal/feed for how live feeds accept them).

// Prune batch bounds: streams per transaction, and events per transaction
// (a transaction stops taking streams once it holds this many events, but
// always takes at least one), so no prune transaction holds the writer for
// long.
const (
	DefaultPruneBatch = 500
	maxPruneEvents    = 50_000
)

// DeleteTask deletes the task's whole stream: its events, its row and the
// rows that refer to it. Returns what it removed, ipa.TaskNotFound when
// there is no such task, ECONFLICT (NOT_CLOSED) when it is still open,
// EUNAVAILABLE when the database is unreachable.
func (s *Store) DeleteTask(ctx context.Context, id string) (ipa.Removed, error) {
	if !validID(id) {
		return ipa.Removed{}, ipa.TaskNotFound(id)
	}
	var out ipa.Removed
	err := s.inTx(ctx, func(tx *gorm.DB) error {
		rows, err := s.lockClosed(tx, []string{id}, nil)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			var n int64
			if err := tx.Table("tasks").Where("id = ?", id).Count(&n).Error; err != nil {
				return err
			}
			if n == 0 {
				return ipa.TaskNotFound(id)
			}
			return ipa.NotClosedError()
		}
		out, err = deleteStreams(tx, rows)
		return err
	})
	if err != nil {
		return ipa.Removed{}, s.wrap(fmt.Errorf("store: delete task: %w", err))
	}
	return out, nil
}

// PruneRequest names what Prune removes.
type PruneRequest struct {
	ClosedBefore time.Time // tasks closed strictly before this instant
	Batch        int       // streams per transaction; 0 = DefaultPruneBatch
	DryRun       bool      // only count
	// Progress, when set, is called after each batch with the running total.
	Progress func(ipa.Removed)
}

// Prune deletes the whole streams of tasks closed before req.ClosedBefore,
// a batch of streams per transaction so that writers wait at most one batch.
// With DryRun it only counts what it would delete. Returns what it removed
// (also the part removed before a failure), EUNAVAILABLE when the database
// is unreachable.
func (s *Store) Prune(ctx context.Context, req PruneRequest) (ipa.Removed, error) {
	batch := req.Batch
	if batch <= 0 {
		batch = DefaultPruneBatch
	}
	cutoff := nanos(req.ClosedBefore)
	var total ipa.Removed
	var after *closedKey // keyset for dry runs, which delete nothing
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		keys, err := s.closedBefore(ctx, cutoff, after, batch)
		if err != nil {
			return total, err
		}
		if len(keys) == 0 {
			return total, nil
		}
		ids := make([]string, len(keys))
		for i, k := range keys {
			ids[i] = k.ID
		}
		var got ipa.Removed
		if req.DryRun {
			after = &keys[len(keys)-1]
			got.Tasks = int64(len(ids))
			if err := s.read.WithContext(ctx).Table("events").Where("stream_id IN ?", ids).Count(&got.Events).Error; err != nil {
				return total, s.wrap(fmt.Errorf("store: prune: %w", err))
			}
		} else {
			err := s.inTx(ctx, func(tx *gorm.DB) error {
				rows, err := s.lockClosed(tx, ids, &cutoff)
				if err != nil {
					return err
				}
				rows, err = boundEvents(tx, rows)
				if err != nil {
					return err
				}
				got, err = deleteStreams(tx, rows)
				return err
			})
			if err != nil {
				return total, s.wrap(fmt.Errorf("store: prune: %w", err))
			}
			if got.Tasks == 0 {
				// Every candidate changed under us (another prune took
				// them); the next read finds the rest.
				after = &keys[len(keys)-1]
			}
		}
		total.Tasks += got.Tasks
		total.Events += got.Events
		if req.Progress != nil {
			req.Progress(total)
		}
	}
}

// closedKey is a closed task's place in the (closed_at, id) order.
type closedKey struct {
	ClosedAt int64  `gorm:"column:closed_at"`
	ID       string `gorm:"column:id"`
}

// closedBefore returns up to limit tasks closed before cutoff, oldest first,
// after the key when given (the tasks_closed index).
func (s *Store) closedBefore(ctx context.Context, cutoff int64, after *closedKey, limit int) ([]closedKey, error) {
	db := s.read.WithContext(ctx).Table("tasks").Select("closed_at, id").
		Where("closed_at IS NOT NULL AND closed_at < ?", cutoff)
	if after != nil {
		db = db.Where("(closed_at, id) > (?, ?)", after.ClosedAt, after.ID)
	}
	var keys []closedKey
	if err := db.Order("closed_at, id").Limit(limit).Scan(&keys).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: prune: %w", err))
	}
	return keys, nil
}

// lockClosed returns the rows among ids that are closed (before cutoff when
// given), locked on PostgreSQL until the transaction ends.
func (s *Store) lockClosed(tx *gorm.DB, ids []string, cutoff *int64) ([]taskRow, error) {
	q := `SELECT ` + taskColumns + ` FROM tasks WHERE id IN ? AND closed_at IS NOT NULL`
	args := []any{ids}
	if cutoff != nil {
		q += ` AND closed_at < ?`
		args = append(args, *cutoff)
	}
	q += ` ORDER BY id`
	if s.postgres() {
		q += ` FOR UPDATE`
	}
	var rows []taskRow
	if err := tx.Raw(q, args...).Scan(&rows).Error; err != nil {
		return nil, err
	}
	return rows, nil
}

// boundEvents keeps the first rows whose streams hold at most
// maxPruneEvents events together (at least one row).
func boundEvents(tx *gorm.DB, rows []taskRow) ([]taskRow, error) {
	if len(rows) <= 1 {
		return rows, nil
	}
	type streamSize struct {
		StreamID string `gorm:"column:stream_id"`
		N        int64  `gorm:"column:n"`
	}
	var sizes []streamSize
	if err := tx.Raw(`SELECT stream_id, COUNT(*) AS n FROM events WHERE stream_id IN ? GROUP BY stream_id`, ids(rows)).
		Scan(&sizes).Error; err != nil {
		return nil, err
	}
	size := make(map[string]int64, len(sizes))
	for _, z := range sizes {
		size[z.StreamID] = z.N
	}
	var sum int64
	for i, r := range rows {
		sum += size[r.ID]
		if i > 0 && sum > maxPruneEvents {
			return rows[:i], nil
		}
	}
	return rows, nil
}

// deleteStreams deletes the streams of rows (locked, closed task rows) with
// everything that refers to them, and moves the counters.
func deleteStreams(tx *gorm.DB, rows []taskRow) (ipa.Removed, error) {
	if len(rows) == 0 {
		return ipa.Removed{}, nil
	}
	list := ids(rows)
	var out ipa.Removed
	if err := tx.Table("events").Where("stream_id IN ?", list).Count(&out.Events).Error; err != nil {
		return ipa.Removed{}, err
	}
	if err := tx.Exec(`DELETE FROM idempotency_keys WHERE task_id IN ?`, list).Error; err != nil {
		return ipa.Removed{}, err
	}
	// Events, the task row and the pod lease go by ON DELETE CASCADE.
	res := tx.Exec(`DELETE FROM streams WHERE id IN ?`, list)
	if res.Error != nil {
		return ipa.Removed{}, res.Error
	}
	out.Tasks = res.RowsAffected
	counts := countDelta{}
	for i := range rows {
		counts.move(&rows[i], nil)
	}
	return out, applyCounts(tx, counts)
}

func ids(rows []taskRow) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	return out
}
