package store

import (
	"context"
	"fmt"
	"reflect"
	"sort"

	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Task counters.
//
// task_counts holds how many task rows have each (status, phase, archived).
// Every write that inserts, changes or deletes a task row moves the counters
// in the same transaction, so counting by status and phase reads a few
// counter rows instead of the tasks table (COUNT(*) over a million rows takes
// hundreds of milliseconds on PostgreSQL, whatever the index).
//
// The writer loop adds up the moves of a whole batch and applies them at its
// end, just before it takes the position counter, in key order. So counter
// rows are locked for as short as the position counter is, and every writer
// takes them in the same order (task rows, then counters in key order, then
// positions): two instances' batches cannot deadlock on them.

// countKey is one counter row.
type countKey struct {
	status, phase string
	archived      bool
}

// countDelta is how much each counter moves.
type countDelta map[countKey]int64

// move records that a task row went from old to next (nil: did not exist /
// no longer exists).
func (d countDelta) move(old, next *taskRow) {
	if old != nil {
		d[countKey{old.Status, old.Phase, old.Archived}]--
	}
	if next != nil {
		d[countKey{next.Status, next.Phase, next.Archived}]++
	}
}

// add merges o into d.
func (d countDelta) add(o countDelta) {
	for k, n := range o {
		d[k] += n
	}
}

// sortedKeys returns the counters d moves (non-zero), in key order: the order
// every writer locks them in.
func (d countDelta) sortedKeys() []countKey {
	keys := make([]countKey, 0, len(d))
	for k, n := range d {
		if n != 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.status != b.status {
			return a.status < b.status
		}
		if a.phase != b.phase {
			return a.phase < b.phase
		}
		return !a.archived && b.archived
	})
	return keys
}

// applyCounts moves the counters by d, in key order, skipping zero moves.
func applyCounts(tx *gorm.DB, d countDelta) error {
	for _, k := range d.sortedKeys() {
		err := tx.Exec(`INSERT INTO task_counts (status, phase, archived, n) VALUES (?, ?, ?, ?)
			ON CONFLICT (status, phase, archived) DO UPDATE SET n = task_counts.n + excluded.n`,
			k.status, k.phase, k.archived, d[k]).Error
		if err != nil {
			return err
		}
	}
	return nil
}

// countable reports whether f can be answered from the counters: it names
// nothing but statuses, phases and archived. Any other field (also one added
// later) makes it false, so a filter the counters cannot answer is counted
// from the rows.
func countable(f ipa.TaskFilter) bool {
	f.Statuses, f.Phases, f.Archived = nil, nil, false
	return reflect.ValueOf(f).IsZero()
}

// countFromCounters sums the counters matching f (countable(f) must hold).
func (s *Store) countFromCounters(ctx context.Context, f ipa.TaskFilter) (int64, error) {
	db := s.read.WithContext(ctx).Table("task_counts").Where("archived = ?", f.Archived)
	if len(f.Statuses) > 0 {
		db = db.Where("status IN ?", strs(f.Statuses))
	}
	if len(f.Phases) > 0 {
		db = db.Where("phase IN ?", strs(f.Phases))
	}
	var n int64
	if err := db.Select("COALESCE(SUM(n), 0)").Scan(&n).Error; err != nil {
		return 0, s.wrap(fmt.Errorf("store: count tasks: %w", err))
	}
	return n, nil
}

// countTasksScan counts the rows passing f (the slow, always-exact path).
func (s *Store) countTasksScan(ctx context.Context, f ipa.TaskFilter) (int64, error) {
	var n int64
	if err := s.filter(s.read.WithContext(ctx).Table("tasks"), f).Count(&n).Error; err != nil {
		return 0, s.wrap(fmt.Errorf("store: count tasks: %w", err))
	}
	return n, nil
}

// rebuildCounts recomputes every counter from the tasks table. On
// PostgreSQL it locks task_counts first: a writer that changed rows this
// statement cannot see has not applied its counter moves yet (they come last
// in its transaction) and applies them after us; one that already did is
// seen by both. Returns how many counter rows were wrong (only compares when
// check).
func (s *Store) rebuildCounts(ctx context.Context, check bool) (int, error) {
	type countRow struct {
		Status   string
		Phase    string
		Archived bool
		N        int64
	}
	wrong := 0
	err := s.inTx(ctx, func(tx *gorm.DB) error {
		if s.postgres() {
			if err := tx.Exec(`LOCK TABLE task_counts IN EXCLUSIVE MODE`).Error; err != nil {
				return err
			}
		}
		var have, want []countRow
		if err := tx.Raw(`SELECT status, phase, archived, n FROM task_counts WHERE n <> 0`).Scan(&have).Error; err != nil {
			return err
		}
		if err := tx.Raw(`SELECT status, phase, archived, COUNT(*) AS n FROM tasks GROUP BY status, phase, archived`).Scan(&want).Error; err != nil {
			return err
		}
		d := countDelta{}
		for _, r := range want {
			d[countKey{r.Status, r.Phase, r.Archived}] += r.N
		}
		for _, r := range have {
			d[countKey{r.Status, r.Phase, r.Archived}] -= r.N
		}
		for _, n := range d {
			if n != 0 {
				wrong++
			}
		}
		if check || wrong == 0 {
			return nil
		}
		return applyCounts(tx, d)
	})
	return wrong, s.wrap(err)
}

// moveCounts records that a task went from cur to next.
func moveCounts(d countDelta, cur, next *ipa.Task) {
	d[countKey{string(cur.Status), string(cur.Phase), cur.Archived}]--
	d[countKey{string(next.Status), string(next.Phase), next.Archived}]++
}
