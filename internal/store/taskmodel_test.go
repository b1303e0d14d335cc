package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// update appends a task_updated event with d.
func update(t testing.TB, s *Store, id string, at time.Time, d ipa.TaskUpdatedData) *ipa.Task {
	t.Helper()
	res, err := s.Append(context.Background(), ipa.AppendRequest{
		TaskID: id, ExpectedVersion: ipa.AnyVersion, Actor: "bob", Now: at,
		Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
			return []ipa.NewEvent{{Type: ipa.EventTaskUpdated, Data: d}}, nil
		},
	})
	require.NoError(t, err)
	return res.Task
}

func childOf(parent string) taskOpt {
	return func(r *ipa.CreateTaskRequest) { r.Created.ParentID = parent }
}

func withLabels(l ipa.Labels) taskOpt {
	return func(r *ipa.CreateTaskRequest) { r.Created.Labels = l }
}

func withDeadline(at time.Time) taskOpt {
	return func(r *ipa.CreateTaskRequest) { r.Created.Deadline = &at }
}

func testTaskModelFilters(t *testing.T, s *Store) {
	ctx := context.Background()
	root := createTask(t, s, "root", t0, withLabels(ipa.Labels{"team": "core", "example.com/tier": "gold"}), withDeadline(t0.Add(time.Hour)))
	a := createTask(t, s, "a", t0.Add(time.Second), childOf(root.ID), withLabels(ipa.Labels{"team": "core", "env": ""}))
	b := createTask(t, s, "b", t0.Add(2*time.Second), childOf(root.ID), withDeadline(t0.Add(time.Minute)))
	c := createTask(t, s, "c", t0.Add(3*time.Second), childOf(a.ID), withLabels(ipa.Labels{"team": "edge"}))
	d := createTask(t, s, "d", t0.Add(4*time.Second))
	c = appendEvents(t, s, c.ID, t0.Add(time.Hour), ipa.EventPodStarted, ipa.EventPodCrashed).Task
	// Relabel a: team moves, env goes; its old pairs must stop matching.
	newLabels := ipa.Labels{"team": "edge", "tier": "x"}
	a = update(t, s, a.ID, t0.Add(time.Hour), ipa.TaskUpdatedData{Labels: &newLabels})
	assert.Equal(t, newLabels, a.Labels)
	got, err := s.GetTask(ctx, a.ID)
	require.NoError(t, err)
	assert.Equal(t, newLabels, got.Labels)
	assert.Equal(t, root.ID, got.ParentID)
	got, err = s.GetTask(ctx, d.ID)
	require.NoError(t, err)
	assert.Equal(t, ipa.Labels{}, got.Labels, "no labels reads as an empty set")
	assert.Nil(t, got.Deadline)
	got, err = s.GetTask(ctx, b.ID)
	require.NoError(t, err)
	require.NotNil(t, got.Deadline)
	assert.True(t, got.Deadline.Equal(t0.Add(time.Minute)))

	all := []*ipa.Task{root, a, b, c, d}
	cases := map[string]struct {
		f    ipa.TaskFilter
		want int
	}{
		"label":          {ipa.TaskFilter{Labels: ipa.Labels{"team": "core"}}, 1},
		"labelPrefixed":  {ipa.TaskFilter{Labels: ipa.Labels{"example.com/tier": "gold"}}, 1},
		"labelsAll":      {ipa.TaskFilter{Labels: ipa.Labels{"team": "edge", "tier": "x"}}, 1},
		"labelsOneMiss":  {ipa.TaskFilter{Labels: ipa.Labels{"team": "edge", "tier": "y"}}, 0},
		"labelEmptyVal":  {ipa.TaskFilter{Labels: ipa.Labels{"env": ""}}, 0},
		"labelEdge":      {ipa.TaskFilter{Labels: ipa.Labels{"team": "edge"}}, 2},
		"podState":       {ipa.TaskFilter{PodStates: []ipa.PodState{ipa.PodCrashed}}, 1},
		"podStates":      {ipa.TaskFilter{PodStates: []ipa.PodState{ipa.PodCrashed, ipa.PodStopped}}, 5},
		"parent":         {ipa.TaskFilter{ParentID: &root.ID}, 2},
		"grandparent":    {ipa.TaskFilter{ParentID: &a.ID}, 1},
		"badParent":      {ipa.TaskFilter{ParentID: ptr("nope")}, 0},
		"deadlineBefore": {ipa.TaskFilter{DeadlineBefore: ptr(t0.Add(30 * time.Minute))}, 1},
		"deadlineLater":  {ipa.TaskFilter{DeadlineBefore: ptr(t0.Add(2 * time.Hour))}, 2},
		"combined":       {ipa.TaskFilter{ParentID: &root.ID, Labels: ipa.Labels{"team": "edge"}}, 1},
	}
	for name, tc := range cases {
		var want []string
		for _, task := range all {
			if tc.f.Matches(task) {
				want = append(want, task.ID)
			}
		}
		assert.Len(t, want, tc.want, name+": Matches")
		page, err := s.FindTasks(ctx, ipa.TaskQuery{Filter: tc.f, Order: ipa.TaskOrder{Field: ipa.OrderCreatedAt}, Limit: 100})
		require.NoError(t, err)
		var ids []string
		for _, task := range page.Tasks {
			ids = append(ids, task.ID)
		}
		assert.Equal(t, want, ids, name)
		n, err := s.CountTasks(ctx, tc.f)
		require.NoError(t, err)
		assert.Equal(t, int64(len(want)), n, name)
	}
}

func testParentRules(t *testing.T, s *Store) {
	ctx := context.Background()
	req := func(parent string) ipa.CreateTaskRequest {
		return ipa.CreateTaskRequest{TaskID: uuid.NewString(), Created: ipa.TaskCreatedData{
			Title: "child", Runtime: "demo", RestartPolicy: ipa.DefaultRestartPolicy(), ParentID: parent,
		}, Actor: "alice"}
	}
	_, err := s.CreateTask(ctx, req(uuid.NewString()))
	requireCode(t, err, ipa.EINVALID, ipa.ReasonInvalidParent)
	closed := createTask(t, s, "closed", t0)
	appendEvents(t, s, closed.ID, t0, ipa.EventTaskCompleted)
	_, err = s.CreateTask(ctx, req(closed.ID))
	requireCode(t, err, ipa.EINVALID, ipa.ReasonInvalidParent)

	parent := createTask(t, s, "parent", t0)
	child := createTask(t, s, "child", t0, childOf(parent.ID))
	_, err = s.Append(ctx, ipa.AppendRequest{TaskID: parent.ID, ExpectedVersion: ipa.AnyVersion, Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
		return []ipa.NewEvent{{Type: ipa.EventTaskCompleted}}, nil
	}})
	requireCode(t, err, ipa.ECONFLICT, ipa.ReasonOpenChildren)
	got, err := s.GetTask(ctx, parent.ID)
	require.NoError(t, err)
	assert.Equal(t, int64(1), got.Version, "a refused close writes nothing")
	// Pod events on a parent with open children are fine; only closing is not.
	appendEvents(t, s, parent.ID, t0, ipa.EventPodStarted, ipa.EventPodStopped)
	appendEvents(t, s, child.ID, t0, ipa.EventTaskCancelled)
	appendEvents(t, s, parent.ID, t0, ipa.EventTaskCancelled)

	// Children created while the parent closes: whatever commits first, a
	// closed parent never has an open child.
	for round := range 5 {
		p := createTask(t, s, "racing parent", t0)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				_, err := s.CreateTask(ctx, req(p.ID))
				if err != nil {
					requireCode(t, err, ipa.EINVALID, ipa.ReasonInvalidParent)
				}
			})
		}
		wg.Go(func() {
			_, err := s.Append(ctx, ipa.AppendRequest{TaskID: p.ID, ExpectedVersion: ipa.AnyVersion, Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
				return []ipa.NewEvent{{Type: ipa.EventTaskCancelled}}, nil
			}})
			if err != nil {
				requireCode(t, err, ipa.ECONFLICT, ipa.ReasonOpenChildren)
			}
		})
		wg.Wait()
		got, err := s.GetTask(ctx, p.ID)
		require.NoError(t, err)
		open, err := s.CountTasks(ctx, ipa.TaskFilter{ParentID: &p.ID, Statuses: []ipa.TaskStatus{ipa.StatusInactive}})
		require.NoError(t, err)
		if got.Status.Closed() {
			assert.Zero(t, open, "round %d: closed parent with open children", round)
		} else {
			assert.NotZero(t, open, "round %d: close refused with no open child", round)
		}
	}
}

func testDueTasks(t *testing.T, s *Store) {
	ctx := context.Background()
	now := t0.Add(time.Hour)
	late := createTask(t, s, "late", t0, withDeadline(now.Add(-time.Minute)))
	exact := createTask(t, s, "exact", t0, withDeadline(now))
	createTask(t, s, "future", t0, withDeadline(now.Add(time.Nanosecond)))
	createTask(t, s, "none", t0)
	closed := createTask(t, s, "closed", t0, withDeadline(now.Add(-time.Hour)))
	appendEvents(t, s, closed.ID, t0, ipa.EventTaskCompleted)
	moved := createTask(t, s, "moved", t0, withDeadline(now.Add(time.Hour)))
	earlier := now.Add(-2 * time.Minute)
	update(t, s, moved.ID, t0, ipa.TaskUpdatedData{Deadline: &earlier})

	due, err := s.DueTasks(ctx, now, 100)
	require.NoError(t, err)
	var ids []string
	for _, d := range due {
		ids = append(ids, d.ID)
	}
	assert.Equal(t, []string{moved.ID, late.ID, exact.ID}, ids, "open tasks at or past their deadline, earliest first")
	due, err = s.DueTasks(ctx, now, 1)
	require.NoError(t, err)
	require.Len(t, due, 1)
	assert.Equal(t, moved.ID, due[0].ID)

}

func testReprojectTaskModel(t *testing.T, s *Store) {
	ctx := context.Background()
	root := createTask(t, s, "root", t0, withLabels(ipa.Labels{"team": "core", "k8s.io/app": "ipa"}), withDeadline(t0.Add(time.Hour)))
	child := createTask(t, s, "child", t0, childOf(root.ID), withLabels(ipa.Labels{"team": "core"}))
	relabel := ipa.Labels{"team": "edge"}
	later := t0.Add(2 * time.Hour)
	update(t, s, child.ID, t0.Add(time.Second), ipa.TaskUpdatedData{Title: ptr("child 2"), Labels: &relabel, Deadline: &later})
	changed, err := s.Reproject(ctx, true)
	require.NoError(t, err)
	assert.Equal(t, 0, changed)

	// Behind the store's back: a lost label row, a stray one, a changed
	// labels column, a lost parent and a changed deadline.
	require.NoError(t, s.write.Exec(`DELETE FROM task_labels WHERE task_id = ? AND key = 'k8s.io/app'`, root.ID).Error)
	require.NoError(t, s.write.Exec(`INSERT INTO task_labels (task_id, key, value) VALUES (?, 'stray', 'x')`, child.ID).Error)
	changed, err = s.Reproject(ctx, true)
	require.NoError(t, err)
	assert.Equal(t, 2, changed, "label rows are part of the projection")
	require.NoError(t, s.write.Exec(`UPDATE tasks SET parent_id = NULL, deadline = 5, labels = '{"a":"b"}' WHERE id = ?`, child.ID).Error)
	changed, err = s.Reproject(ctx, true)
	require.NoError(t, err)
	assert.Equal(t, 2, changed)

	changed, err = s.Reproject(ctx, false)
	require.NoError(t, err)
	assert.Equal(t, 2, changed)
	changed, err = s.Reproject(ctx, true)
	require.NoError(t, err)
	assert.Equal(t, 0, changed)
	got, err := s.GetTask(ctx, child.ID)
	require.NoError(t, err)
	assert.Equal(t, "child 2", got.Title)
	assert.Equal(t, relabel, got.Labels)
	assert.Equal(t, root.ID, got.ParentID)
	require.NotNil(t, got.Deadline)
	assert.True(t, got.Deadline.Equal(later))
	for sel, want := range map[string]int64{"core": 1, "edge": 1} {
		n, err := s.CountTasks(ctx, ipa.TaskFilter{Labels: ipa.Labels{"team": sel}})
		require.NoError(t, err)
		assert.Equal(t, want, n, sel)
	}
	n, err := s.CountTasks(ctx, ipa.TaskFilter{Labels: ipa.Labels{"k8s.io/app": "ipa"}})
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the lost label row is back")
	n, err = s.CountTasks(ctx, ipa.TaskFilter{Labels: ipa.Labels{"stray": "x"}})
	require.NoError(t, err)
	assert.Zero(t, n, "the stray label row is gone")
}
