package store

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// testLabelPages checks label selector pages (read from task_labels' copies
// of the task rows' list columns) against a brute-force filter and sort of
// every task, in every order and direction, paged forwards and backwards
// by keyset: after creates, relabels, title edits and status changes (which
// move updated_at), archiving, tampering with the copies, and reproject.
func testLabelPages(t *testing.T, s *Store) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	// Few distinct times, titles and label values, so that orders have ties
	// and selectors overlap. Titles are lowercase letters and digits, which
	// every collation orders as bytes.
	at := func(k int) time.Time { return t0.Add(time.Duration(k) * time.Second) }
	title := func() string { return fmt.Sprintf("t%d", rng.IntN(6)) }
	randomLabels := func() ipa.Labels {
		l := ipa.Labels{}
		if rng.IntN(5) > 0 {
			l["team"] = []string{"a", "b"}[rng.IntN(2)]
		}
		if rng.IntN(2) == 0 {
			l["zone"] = []string{"x", "y"}[rng.IntN(2)]
		}
		return l
	}
	var ids []string
	for i := range 40 {
		task := createTask(t, s, title(), at(i%4), withLabels(randomLabels()))
		ids = append(ids, task.ID)
	}

	check := func(stage string) {
		t.Helper()
		tasks, err := s.GetTasks(ctx, ids)
		require.NoError(t, err)
		all := make([]*ipa.Task, 0, len(tasks))
		for _, task := range tasks {
			all = append(all, task)
		}
		active := []ipa.TaskStatus{ipa.StatusActive}
		filters := []ipa.TaskFilter{
			{Labels: ipa.Labels{"team": "a"}},
			{Labels: ipa.Labels{"team": "b"}, Statuses: active},
			{Labels: ipa.Labels{"team": "a"}, Statuses: []ipa.TaskStatus{ipa.StatusActive, ipa.StatusCompleted}},
			{Labels: ipa.Labels{"team": "a", "zone": "x"}},
			{Labels: ipa.Labels{"zone": "y"}, Archived: true},
			{Labels: ipa.Labels{"team": "b", "zone": "y"}, Statuses: active},
			{Labels: ipa.Labels{"team": "a"}, TitleContains: ptr("T1")},
			{Labels: ipa.Labels{"team": "nobody"}},
		}
		for _, f := range filters {
			for _, field := range []ipa.TaskOrderField{ipa.OrderUpdatedAt, ipa.OrderCreatedAt, ipa.OrderTitle} {
				for _, desc := range []bool{false, true} {
					order := ipa.TaskOrder{Field: field, Descending: desc}
					name := fmt.Sprintf("%s: %v %s desc=%v", stage, f, field, desc)
					want := bruteForce(all, f, order)
					assert.Equal(t, want, pageForward(t, s, f, order, 3), name+" forward")
					assert.Equal(t, want, pageBackward(t, s, f, order, 3), name+" backward")
					n, err := s.CountTasks(ctx, f)
					require.NoError(t, err)
					assert.EqualValues(t, len(want), n, name+" count")
				}
			}
		}
		changed, err := s.Reproject(ctx, true)
		require.NoError(t, err)
		assert.Zero(t, changed, stage+": the write path keeps the copies as reproject would")
		// The rarer pair of a two-pair selector drives its pages.
		both := ipa.Labels{"team": "a", "zone": "x"}
		teams := len(bruteForce(all, ipa.TaskFilter{Labels: ipa.Labels{"team": "a"}}, ipa.DefaultTaskOrder))
		zones := len(bruteForce(all, ipa.TaskFilter{Labels: ipa.Labels{"zone": "x"}}, ipa.DefaultTaskOrder))
		want := "team"
		if zones < teams {
			want = "zone"
		}
		require.NotEqual(t, teams, zones, stage+": the seed makes one pair rarer")
		got, err := s.rarestPair(s.read.WithContext(ctx), ipa.TaskFilter{Labels: both})
		require.NoError(t, err)
		assert.Equal(t, want, got, stage)
	}
	check("created")

	// Relabel some, retitle some, start and stop pods (status and
	// updated_at move), close and archive others.
	for i, id := range ids {
		now := at(10 + i%3)
		switch i % 5 {
		case 0:
			l := randomLabels()
			update(t, s, id, now, ipa.TaskUpdatedData{Labels: &l})
		case 1:
			update(t, s, id, now, ipa.TaskUpdatedData{Title: ptr(title())})
		case 2:
			appendEvents(t, s, id, now, ipa.EventPodStarted)
		case 3:
			appendEvents(t, s, id, now, ipa.EventTaskCompleted)
			if i%2 == 1 {
				appendEvents(t, s, id, now.Add(time.Second), ipa.EventTaskArchived)
			}
		}
	}
	check("changed")

	// Behind the store's back: a copy of updated_at, a status and an
	// archived flag go wrong. Reproject sees and mends them.
	require.NoError(t, s.write.Exec(`UPDATE task_labels SET updated_at = 1 WHERE task_id = ?`, ids[0]).Error)
	require.NoError(t, s.write.Exec(`UPDATE task_labels SET status = 'CANCELLED' WHERE task_id = ?`, ids[2]).Error)
	require.NoError(t, s.write.Exec(`UPDATE task_labels SET archived = ? WHERE task_id = ?`, true, ids[4]).Error)
	changed, err := s.Reproject(ctx, true)
	require.NoError(t, err)
	want := 0
	for _, i := range []int{0, 2, 4} {
		task, err := s.GetTask(ctx, ids[i])
		require.NoError(t, err)
		if len(task.Labels) > 0 {
			want++
		}
	}
	require.Positive(t, want, "the seed leaves a tampered task with labels")
	assert.Equal(t, want, changed, "the copies in task_labels are part of the projection")
	changed, err = s.Reproject(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, want, changed)
	check("reprojected")
}

// bruteForce returns the ids of the tasks passing f, sorted in order with
// ties broken by id in the same direction.
func bruteForce(all []*ipa.Task, f ipa.TaskFilter, order ipa.TaskOrder) []string {
	var match []*ipa.Task
	for _, task := range all {
		if f.Matches(task) {
			match = append(match, task)
		}
	}
	slices.SortFunc(match, func(a, b *ipa.Task) int {
		var c int
		switch order.Field {
		case ipa.OrderUpdatedAt:
			c = a.UpdatedAt.Compare(b.UpdatedAt)
		case ipa.OrderCreatedAt:
			c = a.CreatedAt.Compare(b.CreatedAt)
		case ipa.OrderTitle:
			c = cmp.Compare(a.Title, b.Title)
		}
		if c == 0 {
			c = cmp.Compare(a.ID, b.ID)
		}
		if order.Descending {
			c = -c
		}
		return c
	})
	ids := []string{}
	for _, task := range match {
		ids = append(ids, task.ID)
	}
	return ids
}

// taskKey is the task's keyset cursor in order.
func taskKey(task *ipa.Task, order ipa.TaskOrder) *ipa.TaskKey {
	k := &ipa.TaskKey{ID: task.ID, Title: task.Title, Time: task.UpdatedAt}
	if order.Field == ipa.OrderCreatedAt {
		k.Time = task.CreatedAt
	}
	return k
}

// pageForward reads every task under f in order, limit at a time (first,
// after).
func pageForward(t *testing.T, s *Store, f ipa.TaskFilter, order ipa.TaskOrder, limit int) []string {
	t.Helper()
	ids := []string{}
	q := ipa.TaskQuery{Filter: f, Order: order, Limit: limit}
	for range 100 {
		page, err := s.FindTasks(context.Background(), q)
		require.NoError(t, err)
		for _, task := range page.Tasks {
			ids = append(ids, task.ID)
		}
		if !page.HasMore {
			return ids
		}
		require.Len(t, page.Tasks, limit)
		q.After = taskKey(page.Tasks[len(page.Tasks)-1], order)
	}
	t.Fatal("paging did not end")
	return nil
}

// pageBackward reads every task under f in order, limit at a time from the
// end (last, before).
func pageBackward(t *testing.T, s *Store, f ipa.TaskFilter, order ipa.TaskOrder, limit int) []string {
	t.Helper()
	ids := []string{}
	q := ipa.TaskQuery{Filter: f, Order: order, Limit: limit, Last: true}
	for range 100 {
		page, err := s.FindTasks(context.Background(), q)
		require.NoError(t, err)
		chunk := make([]string, len(page.Tasks))
		for i, task := range page.Tasks {
			chunk[i] = task.ID
		}
		ids = append(chunk, ids...)
		if !page.HasMore {
			return ids
		}
		require.Len(t, page.Tasks, limit)
		q.Before = taskKey(page.Tasks[0], order)
	}
	t.Fatal("paging did not end")
	return nil
}

// testLabelOrderMigration takes migration 00005 down and up again over
// labelled tasks that have been edited, closed and archived: its backfill
// must give every task_labels row the copies the write path gives it
// (reproject finds nothing to mend), and label pages must agree with a
// brute-force filter.
func testLabelOrderMigration(t *testing.T, s *Store) {
	ctx := context.Background()
	var ids []string
	for i := range 6 {
		task := createTask(t, s, fmt.Sprintf("m%d", i), t0.Add(time.Duration(i)*time.Second), withLabels(ipa.Labels{"team": "a", "n": fmt.Sprint(i % 2)}))
		ids = append(ids, task.ID)
	}
	update(t, s, ids[0], t0.Add(time.Hour), ipa.TaskUpdatedData{Title: ptr("m9")})
	appendEvents(t, s, ids[1], t0.Add(time.Hour), ipa.EventPodStarted)
	appendEvents(t, s, ids[2], t0.Add(time.Hour), ipa.EventTaskCompleted, ipa.EventTaskArchived)

	dir, err := fs.Sub(migrations, "migrations/"+s.dialect)
	require.NoError(t, err)
	dialect := goose.DialectSQLite3
	if s.postgres() {
		dialect = goose.DialectPostgres
	}
	db, err := s.read.DB()
	require.NoError(t, err)
	p, err := goose.NewProvider(dialect, db, dir, goose.WithDisableGlobalRegistry(true))
	require.NoError(t, err)
	down, err := p.DownTo(ctx, 4) // 00005 and every later migration
	require.NoError(t, err)
	var n int64
	require.NoError(t, s.read.Raw(`SELECT COUNT(*) FROM task_labels`).Scan(&n).Error)
	require.EqualValues(t, 12, n, "the label rows stay through the down migration")
	applied, err := s.Migrate(ctx)
	require.NoError(t, err)
	require.Equal(t, len(down), applied)

	changed, err := s.Reproject(ctx, true)
	require.NoError(t, err)
	assert.Zero(t, changed, "the backfill writes the copies the write path writes")
	tasks, err := s.GetTasks(ctx, ids)
	require.NoError(t, err)
	var all []*ipa.Task
	for _, task := range tasks {
		all = append(all, task)
	}
	for _, f := range []ipa.TaskFilter{
		{Labels: ipa.Labels{"team": "a"}},
		{Labels: ipa.Labels{"team": "a"}, Archived: true},
		{Labels: ipa.Labels{"team": "a", "n": "1"}, Statuses: []ipa.TaskStatus{ipa.StatusInactive}},
	} {
		for _, field := range []ipa.TaskOrderField{ipa.OrderUpdatedAt, ipa.OrderCreatedAt, ipa.OrderTitle} {
			order := ipa.TaskOrder{Field: field, Descending: true}
			assert.Equal(t, bruteForce(all, f, order), pageForward(t, s, f, order, 2), "%v %s", f, field)
		}
	}
}
