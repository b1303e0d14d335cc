package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// TestStoreHistory is the conformance suite for paging, counters and
// deleting history, run on every dialect.
func TestStoreHistory(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		fn   func(t *testing.T, s *Store)
	}{
		{"PageEvents", testPageEvents},
		{"FindTasksBackward", testFindTasksBackward},
		{"ArchivedHidden", testArchivedHidden},
		{"CountersFollowRows", testCountersFollowRows},
		{"DeleteTask", testDeleteTask},
		{"Prune", testPrune},
	}
	for _, d := range dialects() {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.fn(t, d.open(t))
				})
			}
		})
	}
}

func i64(v int64) *int64 { return &v }

func eventIDs(evs []ipa.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func testPageEvents(t *testing.T, s *Store) {
	ctx := context.Background()
	a := createTask(t, s, "a", t0)
	b := createTask(t, s, "b", t0)
	for range 3 {
		appendEvents(t, s, a.ID, t0, ipa.EventPodOutput, ipa.EventPodOutput)
		appendEvents(t, s, b.ID, t0, ipa.EventPodOutput)
	}
	all, err := s.ReadEvents(ctx, ipa.EventQuery{Limit: 100})
	require.NoError(t, err)
	require.Len(t, all, 11)

	// Forward through the global log, 4 at a time.
	var got []ipa.Event
	var after *int64
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		p, err := s.PageEvents(ctx, ipa.EventPageQuery{After: after, Limit: 4})
		require.NoError(t, err)
		got = append(got, p.Events...)
		if !p.HasMore {
			break
		}
		after = i64(p.Events[len(p.Events)-1].Position)
	}
	assert.Equal(t, eventIDs(all), eventIDs(got))

	// Backward, 4 at a time: each page oldest first, the pages newest first.
	got = nil
	var before *int64
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		p, err := s.PageEvents(ctx, ipa.EventPageQuery{Before: before, Limit: 4, Last: true})
		require.NoError(t, err)
		for i := 1; i < len(p.Events); i++ {
			require.Greater(t, p.Events[i].Position, p.Events[i-1].Position)
		}
		got = append(slices.Clone(p.Events), got...)
		if !p.HasMore {
			break
		}
		before = i64(p.Events[0].Position)
	}
	assert.Equal(t, eventIDs(all), eventIDs(got))

	// The tail of a's output: last 2 pod_output events by version.
	p, err := s.PageEvents(ctx, ipa.EventPageQuery{TaskID: a.ID, Types: []string{ipa.EventPodOutput}, Limit: 2, Last: true})
	require.NoError(t, err)
	require.Len(t, p.Events, 2)
	assert.Equal(t, []int64{6, 7}, []int64{p.Events[0].Version, p.Events[1].Version})
	assert.True(t, p.HasMore)
	p, err = s.PageEvents(ctx, ipa.EventPageQuery{TaskID: a.ID, Before: i64(6), Limit: 10, Last: true})
	require.NoError(t, err)
	assert.Len(t, p.Events, 5)
	assert.False(t, p.HasMore)

	// One task by position, between two bounds.
	var bs []ipa.Event
	for _, e := range all {
		if e.TaskID == b.ID {
			bs = append(bs, e)
		}
	}
	p, err = s.PageEvents(ctx, ipa.EventPageQuery{TaskID: b.ID, ByPosition: true, After: i64(bs[0].Position), Before: i64(bs[3].Position), Limit: 10})
	require.NoError(t, err)
	assert.Equal(t, eventIDs(bs[1:3]), eventIDs(p.Events))
	assert.False(t, p.HasMore)

	// Global by type.
	p, err = s.PageEvents(ctx, ipa.EventPageQuery{Types: []string{ipa.EventTaskCreated}, Limit: 1})
	require.NoError(t, err)
	assert.Equal(t, a.ID, p.Events[0].TaskID)
	assert.True(t, p.HasMore)
	n, err := s.CountLogEvents(ctx, []string{ipa.EventPodOutput})
	require.NoError(t, err)
	assert.Equal(t, int64(9), n)

	p, err = s.PageEvents(ctx, ipa.EventPageQuery{TaskID: "junk", Limit: 1})
	require.NoError(t, err)
	assert.Empty(t, p.Events)
	_, err = s.PageEvents(ctx, ipa.EventPageQuery{Limit: 0})
	require.Error(t, err)
}

func testFindTasksBackward(t *testing.T, s *Store) {
	all := seedTies(t, s, 30)
	for _, field := range []ipa.TaskOrderField{ipa.OrderCreatedAt, ipa.OrderUpdatedAt, ipa.OrderTitle} {
		for _, desc := range []bool{false, true} {
			order := ipa.TaskOrder{Field: field, Descending: desc}
			want := slices.Clone(all)
			slices.SortFunc(want, func(x, y *ipa.Task) int {
				kx, ky := sortKey(x, field)+x.ID, sortKey(y, field)+y.ID
				if desc {
					kx, ky = ky, kx
				}
				return compareStrings(kx, ky)
			})
			var got []*ipa.Task
			var before *ipa.TaskKey
			for pages := 0; ; pages++ {
				require.Less(t, pages, 100)
				page, err := s.FindTasks(context.Background(), ipa.TaskQuery{Order: order, Limit: 7, Before: before, Last: true})
				require.NoError(t, err)
				got = append(slices.Clone(page.Tasks), got...)
				if !page.HasMore {
					break
				}
				first := page.Tasks[0]
				before = keyOf(first)
				before.Time = first.UpdatedAt
				if field == ipa.OrderCreatedAt {
					before.Time = first.CreatedAt
				}
			}
			var wantIDs, gotIDs []string
			for i := range want {
				wantIDs = append(wantIDs, want[i].ID)
			}
			for i := range got {
				gotIDs = append(gotIDs, got[i].ID)
			}
			assert.Equal(t, wantIDs, gotIDs, "%v desc=%v", field, desc)
		}
	}
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// closeTask completes or cancels the task at at.
func closeTask(t testing.TB, s *Store, id string, at time.Time, cancel bool) *ipa.Task {
	t.Helper()
	typ := ipa.EventTaskCompleted
	if cancel {
		typ = ipa.EventTaskCancelled
	}
	return appendEvents(t, s, id, at, typ).Task
}

func testArchivedHidden(t *testing.T, s *Store) {
	ctx := context.Background()
	open := createTask(t, s, "open", t0)
	done := createTask(t, s, "done", t0)
	closeTask(t, s, done.ID, t0.Add(time.Second), false)
	archived := appendEvents(t, s, done.ID, t0.Add(2*time.Second), ipa.EventTaskArchived).Task
	require.True(t, archived.Archived)

	page, err := s.FindTasks(ctx, ipa.TaskQuery{Limit: 10})
	require.NoError(t, err)
	require.Len(t, page.Tasks, 1)
	assert.Equal(t, open.ID, page.Tasks[0].ID)
	page, err = s.FindTasks(ctx, ipa.TaskQuery{Filter: ipa.TaskFilter{Archived: true}, Limit: 10})
	require.NoError(t, err)
	require.Len(t, page.Tasks, 1)
	assert.Equal(t, done.ID, page.Tasks[0].ID)
	assert.True(t, page.Tasks[0].Archived)

	for f, want := range map[string]int64{"": 1, "archived": 1, "completed": 0, "completedArchived": 1} {
		filter := ipa.TaskFilter{Archived: f == "archived" || f == "completedArchived"}
		if f == "completed" || f == "completedArchived" {
			filter.Statuses = []ipa.TaskStatus{ipa.StatusCompleted}
		}
		n, err := s.CountTasks(ctx, filter)
		require.NoError(t, err)
		assert.Equal(t, want, n, f)
	}
	changed, err := s.Reproject(ctx, true)
	require.NoError(t, err)
	assert.Zero(t, changed, "task_archived folds the same way on replay")
}

// requireCountsAgree checks the counters against COUNT(*) for every filter
// the counters answer.
func requireCountsAgree(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	statuses := [][]ipa.TaskStatus{nil, {ipa.StatusActive}, {ipa.StatusInactive}, {ipa.StatusCompleted, ipa.StatusCancelled}}
	phases := [][]ipa.Phase{nil, {ipa.PhaseSpecClarification}, {ipa.PhasePlanning, ipa.PhaseCompleted}, {ipa.PhaseCancelled}}
	for _, st := range statuses {
		for _, ph := range phases {
			for _, arch := range []bool{false, true} {
				f := ipa.TaskFilter{Statuses: st, Phases: ph, Archived: arch}
				require.True(t, countable(f))
				fast, err := s.CountTasks(ctx, f)
				require.NoError(t, err)
				slow, err := s.countTasksScan(ctx, f)
				require.NoError(t, err)
				require.Equal(t, slow, fast, "%+v", f)
			}
		}
	}
}

func testCountersFollowRows(t *testing.T, s *Store) {
	ctx := context.Background()
	assert.False(t, countable(ipa.TaskFilter{Runtime: ptr("demo")}))
	var ids []string
	for i := range 12 {
		task := createTask(t, s, fmt.Sprintf("t%d", i), t0)
		ids = append(ids, task.ID)
		switch i % 4 {
		case 1:
			appendEvents(t, s, task.ID, t0, ipa.EventPodStarted)
		case 2:
			closeTask(t, s, task.ID, t0, i%8 == 2)
		case 3:
			closeTask(t, s, task.ID, t0, false)
			appendEvents(t, s, task.ID, t0, ipa.EventTaskArchived)
		}
	}
	// A phase change, concurrently on several tasks (batched commits).
	done := make(chan error)
	for _, id := range ids[:8] {
		go func() {
			_, err := s.Append(ctx, ipa.AppendRequest{TaskID: id, ExpectedVersion: ipa.AnyVersion, Decide: func(cur *ipa.Task) ([]ipa.NewEvent, error) {
				if cur.Status.Closed() {
					return nil, nil
				}
				return []ipa.NewEvent{{Type: ipa.EventPhaseChanged, Data: ipa.PhaseChangedData{From: cur.Phase, To: ipa.PhasePlanning}}}, nil
			}})
			done <- err
		}()
	}
	for range 8 {
		require.NoError(t, <-done)
	}
	// A Decide that fails inside a batch moves no counter.
	_, err := s.Append(ctx, ipa.AppendRequest{TaskID: ids[0], ExpectedVersion: ipa.AnyVersion, Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
		return nil, ipa.Errorf(ipa.ECONFLICT, "NOPE", "no")
	}})
	require.Error(t, err)
	requireCountsAgree(t, s)

	_, err = s.DeleteTask(ctx, ids[2])
	require.NoError(t, err)
	requireCountsAgree(t, s)

	// Counters tampered with behind the store's back: check finds it,
	// reproject repairs it.
	require.NoError(t, s.write.Exec(`UPDATE task_counts SET n = n + 5 WHERE status = 'INACTIVE' AND phase = 'PLANNING' AND archived = ?`, false).Error)
	changed, err := s.Reproject(ctx, true)
	require.NoError(t, err)
	assert.Equal(t, 1, changed)
	changed, err = s.Reproject(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, 1, changed)
	requireCountsAgree(t, s)
	// A row tampered with: reproject rewrites the row and its counters follow.
	require.NoError(t, s.write.Exec(`UPDATE tasks SET status = 'ACTIVE' WHERE id = ?`, ids[0]).Error)
	changed, err = s.Reproject(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, 1, changed)
	requireCountsAgree(t, s)
}

func testDeleteTask(t *testing.T, s *Store) {
	ctx := context.Background()
	open := createTask(t, s, "open", t0)
	done := createTask(t, s, "done", t0, func(r *ipa.CreateTaskRequest) { r.IdempotencyKey = "k1" })
	appendEvents(t, s, done.ID, t0, ipa.EventPodStarted, ipa.EventPodOutput, ipa.EventPodStopped)
	closed := closeTask(t, s, done.ID, t0, true)
	require.NoError(t, s.SaveLease(ctx, "me", done.ID, []byte(`{}`), t0))

	_, err := s.DeleteTask(ctx, open.ID)
	requireCode(t, err, ipa.ECONFLICT, ipa.ReasonNotClosed)
	_, err = s.DeleteTask(ctx, uuid.NewString())
	requireCode(t, err, ipa.ENOTFOUND, ipa.ReasonTaskNotFound)
	_, err = s.DeleteTask(ctx, "junk")
	requireCode(t, err, ipa.ENOTFOUND, ipa.ReasonTaskNotFound)

	head, err := s.HeadPosition(ctx)
	require.NoError(t, err)
	removed, err := s.DeleteTask(ctx, done.ID)
	require.NoError(t, err)
	assert.Equal(t, ipa.Removed{Tasks: 1, Events: closed.Version}, removed)
	_, err = s.GetTask(ctx, done.ID)
	requireCode(t, err, ipa.ENOTFOUND, ipa.ReasonTaskNotFound)
	n, err := s.CountEvents(ctx, done.ID, nil)
	require.NoError(t, err)
	assert.Zero(t, n)
	var left int64
	require.NoError(t, s.read.Raw(`SELECT COUNT(*) FROM idempotency_keys WHERE task_id = ?`, done.ID).Scan(&left).Error)
	assert.Zero(t, left)
	require.NoError(t, s.read.Raw(`SELECT COUNT(*) FROM pod_leases WHERE task_id = ?`, done.ID).Scan(&left).Error)
	assert.Zero(t, left)

	// The idempotency key is free again; positions go on from the old head.
	again := createTask(t, s, "again", t0, func(r *ipa.CreateTaskRequest) { r.IdempotencyKey = "k1" })
	evs, err := s.ReadEvents(ctx, ipa.EventQuery{TaskID: again.ID, Limit: 1})
	require.NoError(t, err)
	assert.Equal(t, head+1, evs[0].Position)
	changed, err := s.Reproject(ctx, true)
	require.NoError(t, err)
	assert.Zero(t, changed)
}

func testPrune(t *testing.T, s *Store) {
	ctx := context.Background()
	cutoff := t0.Add(time.Hour)
	var old []string
	var oldEvents int64
	for i := range 7 {
		task := createTask(t, s, fmt.Sprintf("old%d", i), t0)
		appendEvents(t, s, task.ID, t0, ipa.EventPodOutput)
		closed := closeTask(t, s, task.ID, t0.Add(time.Duration(i)*time.Minute), i%2 == 0)
		old = append(old, task.ID)
		oldEvents += closed.Version
	}
	recent := createTask(t, s, "recent", t0)
	closeTask(t, s, recent.ID, cutoff.Add(time.Second), false)
	open := createTask(t, s, "open", t0)

	var progress []ipa.Removed
	dry, err := s.Prune(ctx, PruneRequest{ClosedBefore: cutoff, Batch: 3, DryRun: true, Progress: func(r ipa.Removed) { progress = append(progress, r) }})
	require.NoError(t, err)
	assert.Equal(t, ipa.Removed{Tasks: 7, Events: oldEvents}, dry)
	assert.Len(t, progress, 3, "7 tasks in batches of 3")
	_, err = s.GetTask(ctx, old[0])
	require.NoError(t, err, "a dry run deletes nothing")

	progress = nil
	got, err := s.Prune(ctx, PruneRequest{ClosedBefore: cutoff, Batch: 3, Progress: func(r ipa.Removed) { progress = append(progress, r) }})
	require.NoError(t, err)
	assert.Equal(t, dry, got)
	assert.Len(t, progress, 3)
	for _, id := range old {
		_, err := s.GetTask(ctx, id)
		requireCode(t, err, ipa.ENOTFOUND, ipa.ReasonTaskNotFound)
	}
	for _, id := range []string{recent.ID, open.ID} {
		_, err := s.GetTask(ctx, id)
		require.NoError(t, err)
	}
	n, err := s.CountLogEvents(ctx, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(3), n, "recent's two events and open's one")
	requireCountsAgree(t, s)

	got, err = s.Prune(ctx, PruneRequest{ClosedBefore: cutoff})
	require.NoError(t, err)
	assert.Zero(t, got)
}

// explainEvents returns the query plan of PageEvents for q.
func explainEvents(t testing.TB, s *Store, q ipa.EventPageQuery) string {
	t.Helper()
	query := s.read.ToSQL(func(tx *gorm.DB) *gorm.DB {
		db, err := eventPageQuery(tx, q)
		require.NoError(t, err)
		var rows []eventRow
		return db.Scan(&rows)
	})
	return explainSQL(t, s, query)
}

// TestHistoryPlans checks that event pages in both directions and backward
// task pages are index range scans with no sort.
func TestHistoryPlans(t *testing.T) {
	t.Parallel()
	for _, d := range dialects() {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := d.open(t)
			n := 20_000
			if !s.postgres() {
				n = 2_000
			}
			seedTasks(t, s, n)
			seedEvents(t, s, 20)
			id := bigStream(t, s, 20, 20_000) // a long-running pod's output
			mid := t0.Add(time.Duration(n/2) * time.Millisecond)
			key := &ipa.TaskKey{Time: mid, Title: "task 5", ID: uuid.NewString()}
			active := ipa.TaskFilter{Statuses: []ipa.TaskStatus{ipa.StatusActive}}
			plans := map[string]string{
				"logForward":       explainEvents(t, s, ipa.EventPageQuery{After: i64(100), Limit: 100}),
				"logBackward":      explainEvents(t, s, ipa.EventPageQuery{Before: i64(1000), Limit: 100, Last: true}),
				"logTypeBackward":  explainEvents(t, s, ipa.EventPageQuery{Types: []string{ipa.EventPodOutput}, Limit: 100, Last: true}),
				"taskTail":         explainEvents(t, s, ipa.EventPageQuery{TaskID: id, Types: []string{ipa.EventPodOutput}, Limit: 50, Last: true}),
				"taskBackward":     explainEvents(t, s, ipa.EventPageQuery{TaskID: id, Before: i64(30), Limit: 50, Last: true}),
				"taskByPosition":   explainEvents(t, s, ipa.EventPageQuery{TaskID: id, ByPosition: true, After: i64(10), Limit: 50}),
				"tasksLast":        explain(t, s, ipa.TaskQuery{Order: ipa.DefaultTaskOrder, Limit: 100, Last: true}),
				"tasksStatusLast":  explain(t, s, ipa.TaskQuery{Filter: active, Order: ipa.DefaultTaskOrder, Limit: 100, Before: key, Last: true}),
				"tasksCreatedLast": explain(t, s, ipa.TaskQuery{Order: ipa.TaskOrder{Field: ipa.OrderCreatedAt}, Limit: 100, After: key, Before: key, Last: true}),
			}
			for name, plan := range plans {
				if s.postgres() {
					assert.Contains(t, plan, "Index", name+"\n"+plan)
					assert.NotContains(t, plan, "Sort", name+"\n"+plan)
					assert.NotContains(t, plan, "Seq Scan", name+"\n"+plan)
				} else {
					assert.NotContains(t, plan, "TEMP B-TREE", name+"\n"+plan)
					assert.Regexp(t, "USING (INDEX|INTEGER PRIMARY KEY|COVERING INDEX)", plan, name+"\n"+plan)
				}
			}
		})
	}
}

// seedEvents gives every seeded task k events (pod_output and others), so
// the planner sees a realistic events table.
func seedEvents(t testing.TB, s *Store, k int) {
	t.Helper()
	db := s.rawDB()
	ctx := context.Background()
	types := []string{ipa.EventPodOutput, ipa.EventPodOutput, ipa.EventPhaseChanged, ipa.EventPodStarted}
	q := `INSERT INTO events (position, id, stream_id, version, type, data, occurred_at)
		SELECT (ROW_NUMBER() OVER (ORDER BY id)) * %d + %d, %s, id, %d, '%s', '{}', 0 FROM streams`
	newID := "lower(hex(randomblob(16)))"
	if s.postgres() {
		newID = "gen_random_uuid()"
	}
	for v := 1; v <= k; v++ {
		_, err := db.ExecContext(ctx, fmt.Sprintf(q, k, v, newID, v, types[v%len(types)]))
		require.NoError(t, err)
	}
}

// bigStream appends n more events (after the k seedEvents gave it) to one
// seeded stream, and returns its id.
func bigStream(t testing.TB, s *Store, k, n int) string {
	t.Helper()
	db := s.rawDB()
	ctx := context.Background()
	var id string
	var head int64
	require.NoError(t, db.QueryRowContext(ctx, `SELECT id FROM streams ORDER BY id LIMIT 1`).Scan(&id))
	require.NoError(t, db.QueryRowContext(ctx, `SELECT MAX(position) FROM events`).Scan(&head))
	q := `INSERT INTO events (position, id, stream_id, version, type, data, occurred_at)
		SELECT %d + v, %s, '%s', %d + v, CASE WHEN v %% 4 = 0 THEN 'phase_changed' ELSE 'pod_output' END, '{}', 0
		FROM (%s) AS g`
	newID, series := "lower(hex(randomblob(16)))", fmt.Sprintf("WITH RECURSIVE r(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM r WHERE v < %d) SELECT v FROM r", n)
	if s.postgres() {
		newID, series = "gen_random_uuid()", fmt.Sprintf("SELECT generate_series(1, %d) AS v", n)
	}
	_, err := db.ExecContext(ctx, fmt.Sprintf(q, head, newID, id, k, series))
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, map[bool]string{true: "ANALYZE", false: "PRAGMA optimize"}[s.postgres()])
	require.NoError(t, err)
	return id
}
