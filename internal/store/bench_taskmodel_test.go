package store

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Benchmarks of the task model (labels, children, deadlines, pruning),
// each beside a baseline measured in the same run. Sizes are small by
// default; IPA_BENCH_LARGE=1 runs the sizes the targets name.

// benchLarge reports whether IPA_BENCH_LARGE=1 asks for the large sizes.
func benchLarge() bool { return os.Getenv("IPA_BENCH_LARGE") == "1" }

// bigParent is the parent of one task in every 100 in the list benchmark:
// 10,000 children among 1,000,000 tasks.
var bigParent = uuid.NewString()

// BenchmarkTaskModelLists reads pages of 100 in the default order
// (UPDATED_AT DESC): by one label (team, 1% of the tasks), and the children
// of a parent with 1% of the tasks as children, first page and a page after
// ~90% of the matches (keyset), beside the unfiltered and one-status pages on
// the same table. 100k tasks (1,000 children); 1M (10,000) with
// IPA_BENCH_LARGE=1.
func BenchmarkTaskModelLists(b *testing.B) {
	n := 100_000
	if benchLarge() {
		n = 1_000_000
	}
	ctx := context.Background()
	for _, d := range benchDialects() {
		b.Run(d.name, func(b *testing.B) {
			s := d.open(b)
			start := time.Now()
			seedTasksWith(b, s, n, seedOptions{row: func(k int, _ int64, r *seedRow) {
				if k%100 == 7 {
					r.parent = bigParent
				}
			}})
			b.Logf("seeded %d tasks in %v", n, time.Since(start))
			parent := bigParent
			for _, c := range []struct {
				name   string
				filter ipa.TaskFilter
				total  int
			}{
				{"all", ipa.TaskFilter{}, n},
				{"status", ipa.TaskFilter{Statuses: []ipa.TaskStatus{ipa.StatusActive}}, n / 4},
				{"label", ipa.TaskFilter{Labels: ipa.Labels{"team": "t42"}}, n / 100},
				{"children", ipa.TaskFilter{ParentID: &parent}, n / 100},
			} {
				total, err := s.countTasksScan(ctx, c.filter)
				require.NoError(b, err)
				require.EqualValues(b, c.total, total, c.name)
				// A key ~90% deep that still leaves a full page after it.
				deep := deepKey(b, s, c.filter, min(c.total*9/10, c.total-101))
				for _, p := range []struct {
					name  string
					after *ipa.TaskKey
				}{{"first", nil}, {"deep", deep}} {
					b.Run(fmt.Sprintf("%s/%s/%d", c.name, p.name, n), func(b *testing.B) {
						q := ipa.TaskQuery{Filter: c.filter, Order: ipa.DefaultTaskOrder, Limit: 100, After: p.after}
						run(b, 1, func() error {
							page, err := s.FindTasks(ctx, q)
							if err == nil && len(page.Tasks) != 100 {
								err = fmt.Errorf("got %d tasks", len(page.Tasks))
							}
							return err
						})
					})
				}
			}
		})
	}
}

// seedDue seeds n open tasks, each with a task_created event and a deadline
// already passed, and no parent.
func seedDue(tb testing.TB, s *Store, n int) {
	seedTasksWith(tb, s, n, seedOptions{events: 1, row: func(k int, created int64, r *seedRow) {
		r.status = []ipa.TaskStatus{ipa.StatusActive, ipa.StatusInactive}[k%2]
		r.parent = nil
		r.deadline = created + int64(time.Second)
	}})
}

// rawSweep is the floor of the deadline sweep: it reads the due tasks in
// batches of 100 from the same index as DueTasks and closes them with one
// UPDATE each, one transaction per batch; no event, no checks, no counters.
// Returns how many it closed.
func rawSweep(ctx context.Context, s *Store, now time.Time) (int, error) {
	db := s.rawDB()
	from := "tasks"
	if !s.postgres() {
		from = "tasks INDEXED BY tasks_open_deadline"
	}
	sel := `SELECT id FROM ` + from + ` WHERE deadline <= ` + s.placeholders(0, 1) +
		` AND closed_at IS NULL ORDER BY deadline, id LIMIT 100`
	upd := `UPDATE tasks SET status = 'CANCELLED', closed_at = ` + s.placeholders(0, 1) +
		`, updated_at = ` + s.placeholders(1, 1) + `, version = version + 1 WHERE id = ` + s.placeholders(2, 1) + ` AND closed_at IS NULL`
	total := 0
	for {
		ids, err := queryIDs(ctx, s, sel, nanos(now))
		if err != nil || len(ids) == 0 {
			return total, err
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return total, err
		}
		stamp := time.Now().UnixNano()
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, upd, stamp, stamp, id); err != nil {
				tx.Rollback() //nolint:errcheck // the exec's error is the one to return
				return total, err
			}
		}
		if err := tx.Commit(); err != nil {
			return total, err
		}
		total += len(ids)
	}
}

func queryIDs(ctx context.Context, s *Store, q string, args ...any) ([]string, error) {
	rows, err := s.rawDB().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// pruneEvents is how many events each pruned task has.
const pruneEvents = 4

// BenchmarkPrune prunes every one of n closed tasks (pruneEvents events
// each) with Prune, beside the floor: the same streams deleted by id with
// one DELETE per batch of DefaultPruneBatch (events, rows and labels going
// by ON DELETE CASCADE), one transaction per batch. Each iteration seeds a
// fresh database outside the timer. 10k tasks; 100k with IPA_BENCH_LARGE=1.
// Run with -benchtime 1x.
func BenchmarkPrune(b *testing.B) {
	n := 10_000
	if benchLarge() {
		n = 100_000
	}
	ctx := context.Background()
	for _, d := range benchDialects() {
		b.Run(d.name, func(b *testing.B) {
			for _, p := range []struct {
				name string
				fn   func(s *Store, cutoff time.Time) (ipa.Removed, error)
			}{
				{"prune", func(s *Store, cutoff time.Time) (ipa.Removed, error) {
					return s.Prune(ctx, PruneRequest{ClosedBefore: cutoff})
				}},
				{"rawDelete", func(s *Store, cutoff time.Time) (ipa.Removed, error) {
					return rawPrune(ctx, s, cutoff, DefaultPruneBatch, pruneEvents)
				}},
			} {
				b.Run(fmt.Sprintf("%s/%d", p.name, n), func(b *testing.B) {
					var took time.Duration
					for range b.N {
						b.StopTimer()
						s := d.open(b)
						seedTasksWith(b, s, n, seedOptions{events: pruneEvents, row: func(k int, created int64, r *seedRow) {
							r.status = []ipa.TaskStatus{ipa.StatusCompleted, ipa.StatusCancelled}[k%2]
							r.closedAt = created
						}})
						b.StartTimer()
						start := time.Now()
						got, err := p.fn(s, time.Now())
						took += time.Since(start)
						require.NoError(b, err)
						require.EqualValues(b, n, got.Tasks)
						require.EqualValues(b, n*pruneEvents, got.Events)
						b.StopTimer()
						var left int64
						require.NoError(b, s.read.Table("events").Count(&left).Error)
						require.Zero(b, left)
						s.Close()
					}
					b.ReportMetric(float64(n*b.N)/took.Seconds(), "tasks/s")
					b.ReportMetric(float64(n*pruneEvents*b.N)/took.Seconds(), "events/s")
				})
			}
		})
	}
}

// rawPrune is the floor of Prune: it reads closed tasks in batches from
// the tasks_closed index and deletes their streams by id, one transaction
// per batch. It counts events as events per task (the seed's number).
func rawPrune(ctx context.Context, s *Store, cutoff time.Time, batch, events int) (ipa.Removed, error) {
	sel := `SELECT id FROM tasks WHERE closed_at IS NOT NULL AND closed_at < ` + s.placeholders(0, 1) +
		` ORDER BY closed_at, id LIMIT ` + fmt.Sprint(batch)
	var out ipa.Removed
	for {
		ids, err := queryIDs(ctx, s, sel, nanos(cutoff))
		if err != nil || len(ids) == 0 {
			return out, err
		}
		marks := make([]string, len(ids))
		args := make([]any, len(ids))
		for i, id := range ids {
			marks[i] = strings.Trim(s.placeholders(i, 1), "()")
			args[i] = id
		}
		tx, err := s.rawDB().BeginTx(ctx, nil)
		if err != nil {
			return out, err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM streams WHERE id IN (`+strings.Join(marks, ", ")+`)`, args...)
		if err != nil {
			tx.Rollback() //nolint:errcheck // the exec's error is the one to return
			return out, err
		}
		if err := tx.Commit(); err != nil {
			return out, err
		}
		k, _ := res.RowsAffected()
		out.Tasks += k
		out.Events += k * int64(events)
	}
}
