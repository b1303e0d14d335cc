package store

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

const (
	reprojectStreams = 200  // streams per batch
	reprojectEvents  = 1000 // events per read of one stream
)

// Reproject folds every stream's events with ipa.Apply and compares the
// result with the stored task row, field by field (JSON by meaning). Unless
// check, it rewrites rows that differ or are missing and deletes rows that
// have no stream. It returns how many rows differed. It reads streams in
// batches and each stream's events in chunks, so memory stays flat. Returns a
// plain error for a stream that does not fold (a corrupt log), EUNAVAILABLE
// when the database is unreachable.
func (s *Store) Reproject(ctx context.Context, check bool) (int, error) {
	changed := 0
	after := ""
	for {
		var ids []string
		q := s.read.WithContext(ctx).Table("streams").Where("type = ?", ipa.StreamTypeTask)
		if after != "" {
			q = q.Where("id > ?", after)
		}
		if err := q.Order("id").Limit(reprojectStreams).Pluck("id", &ids).Error; err != nil {
			return changed, s.wrap(fmt.Errorf("store: reproject: %w", err))
		}
		if len(ids) == 0 {
			break
		}
		after = ids[len(ids)-1]
		stored, err := s.rowsByID(ctx, ids)
		if err != nil {
			return changed, err
		}
		labels, err := s.labelsByID(ctx, ids)
		if err != nil {
			return changed, err
		}
		for _, id := range ids {
			want, wantLabels, err := s.foldStream(s.read.WithContext(ctx), id)
			if err != nil {
				return changed, err
			}
			have, ok := stored[id]
			if ok && want != nil && sameRow(have, *want) && sameLabelRows(labels[id], labelRowsOf(*want, wantLabels)) {
				continue
			}
			if !ok && want == nil {
				continue
			}
			changed++
			if !check {
				if err := s.rewrite(ctx, id); err != nil {
					return changed, err
				}
			}
		}
	}
	n, err := s.orphans(ctx, check)
	changed += n
	if err != nil {
		return changed, err
	}
	// The counters follow the rows: rebuilt after them, and only reported
	// on their own when every row agrees (drift of the counters alone).
	wrong, err := s.rebuildCounts(ctx, check)
	if err != nil {
		return changed, err
	}
	if changed == 0 {
		changed = wrong
	}
	// The inbox follows the streams too.
	n, err = s.reprojectRequests(ctx, check)
	changed += n
	if err != nil {
		return changed, err
	}
	return changed, nil
}

// rowsByID reads the stored task rows for ids.
func (s *Store) rowsByID(ctx context.Context, ids []string) (map[string]taskRow, error) {
	var rows []taskRow
	if err := s.read.WithContext(ctx).Raw(`SELECT `+taskColumns+` FROM tasks WHERE id IN ?`, ids).Scan(&rows).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: reproject: %w", err))
	}
	out := make(map[string]taskRow, len(rows))
	for _, r := range rows {
		out[r.ID] = r
	}
	return out, nil
}

// labelsByID reads the task_labels rows of ids, each task's sorted by key
// (in Go: PostgreSQL's collation may order text differently).
func (s *Store) labelsByID(ctx context.Context, ids []string) (map[string][]labelRow, error) {
	var rows []labelRow
	err := s.read.WithContext(ctx).Raw(`SELECT `+labelColumns+` FROM task_labels WHERE task_id IN ?`, ids).
		Scan(&rows).Error
	if err != nil {
		return nil, s.wrap(fmt.Errorf("store: reproject: %w", err))
	}
	out := make(map[string][]labelRow)
	for _, r := range rows {
		out[r.TaskID] = append(out[r.TaskID], r)
	}
	for _, rs := range out {
		slices.SortFunc(rs, func(a, b labelRow) int { return strings.Compare(a.Key, b.Key) })
	}
	return out, nil
}

// sameLabelRows reports whether the stored label rows of a task are the
// ones its folded row makes, copies of the row's list columns included.
func sameLabelRows(have, want []labelRow) bool {
	return slices.Equal(have, want)
}

// foldStream folds the stream's events, read in chunks, into the row they
// make and the task's labels; nil when the stream has no events.
func (s *Store) foldStream(db *gorm.DB, id string) (*taskRow, ipa.Labels, error) {
	t := &ipa.Task{}
	for {
		var rows []eventRow
		err := db.Raw(`SELECT `+eventColumns+` FROM events WHERE stream_id = ? AND version > ? ORDER BY version LIMIT ?`,
			id, t.Version, reprojectEvents).Scan(&rows).Error
		if err != nil {
			return nil, nil, s.wrap(fmt.Errorf("store: reproject %s: %w", id, err))
		}
		for _, r := range rows {
			if err := ipa.Apply(t, r.event()); err != nil {
				return nil, nil, fmt.Errorf("store: reproject: %w", err)
			}
		}
		if len(rows) < reprojectEvents {
			break
		}
	}
	if t.Version == 0 {
		return nil, nil, nil
	}
	r, err := taskToRow(t)
	return &r, t.Labels, err
}

// rewrite refolds one stream inside a write transaction (the stream row
// locked on PostgreSQL, the single writer on SQLite) and replaces its task
// row, so a concurrent append cannot be overwritten by a stale fold.
func (s *Store) rewrite(ctx context.Context, id string) error {
	err := s.inTx(ctx, func(tx *gorm.DB) error {
		lock := `SELECT version FROM streams WHERE id = ?`
		if s.postgres() {
			lock += ` FOR UPDATE`
		}
		var v []int64
		if err := tx.Raw(lock, id).Scan(&v).Error; err != nil {
			return err
		}
		want, labels, err := s.foldStream(tx, id)
		if err != nil {
			return err
		}
		var old []taskRow
		if err := tx.Raw(`SELECT `+taskColumns+` FROM tasks WHERE id = ?`, id).Scan(&old).Error; err != nil {
			return err
		}
		// Deleting the row deletes its task_labels rows too (cascade).
		if err := tx.Exec(`DELETE FROM tasks WHERE id = ?`, id).Error; err != nil {
			return err
		}
		counts := countDelta{}
		for i := range old {
			counts.move(&old[i], nil)
		}
		if want != nil {
			if err := tx.Create(want).Error; err != nil {
				return err
			}
			counts.move(nil, want)
			if err := writeLabels(tx, *want, labels, true); err != nil {
				return err
			}
			deps, err := want.task()
			if err != nil {
				return err
			}
			if err := writeDeps(tx, want.ID, deps.DependsOn, true); err != nil {
				return err
			}
		}
		return applyCounts(tx, counts)
	})
	return s.wrap(err)
}

// orphans counts (and unless check deletes) task rows without a stream.
func (s *Store) orphans(ctx context.Context, check bool) (int, error) {
	const where = `id NOT IN (SELECT id FROM streams)`
	if check {
		var n int64
		if err := s.read.WithContext(ctx).Table("tasks").Where(where).Count(&n).Error; err != nil {
			return 0, s.wrap(fmt.Errorf("store: reproject: %w", err))
		}
		return int(n), nil
	}
	res := s.write.WithContext(ctx).Exec(`DELETE FROM tasks WHERE ` + where)
	if res.Error != nil {
		return 0, s.wrap(fmt.Errorf("store: reproject: %w", res.Error))
	}
	return int(res.RowsAffected), nil
}
