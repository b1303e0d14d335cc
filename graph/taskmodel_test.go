package graph_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app"
	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// modelTask is a Task with the task model's fields.
type modelTask struct {
	ID       string            `json:"id"`
	Title    string            `json:"title"`
	Status   string            `json:"status"`
	Version  int               `json:"version"`
	Labels   map[string]string `json:"labels"`
	Deadline *time.Time        `json:"deadline"`
	Parent   *struct {
		ID string `json:"id"`
	} `json:"parent"`
	Metadata      json.RawMessage `json:"metadata"`
	Description   *string         `json:"description"`
	RestartPolicy struct {
		AutoRestart bool `json:"autoRestart"`
		MaxAttempts int  `json:"maxAttempts"`
	} `json:"restartPolicy"`
}

const modelFields = `id title status version labels deadline parent { id } metadata description restartPolicy { autoRestart maxAttempts }`

func (c *client) createModel(t *testing.T, input map[string]any) modelTask {
	t.Helper()
	var out struct{ CreateTask struct{ Task modelTask } }
	c.Must(t, `mutation($in: CreateTaskInput!) { createTask(input: $in) { task { `+modelFields+` } } }`, map[string]any{"in": input}, &out)
	return out.CreateTask.Task
}

func (c *client) getModel(t *testing.T, id string) modelTask {
	t.Helper()
	var out struct{ Task *modelTask }
	c.Must(t, `query($id: ID!) { task(id: $id) { `+modelFields+` } }`, map[string]any{"id": id}, &out)
	require.NotNil(t, out.Task)
	return *out.Task
}

const updateTaskMutation = `mutation($id: ID!, $in: UpdateTaskInput!, $v: Int) { updateTask(taskId: $id, input: $in, expectedVersion: $v) { task { ` + modelFields + ` } } }`

func (c *client) update(t *testing.T, id string, in map[string]any) modelTask {
	t.Helper()
	var out struct{ UpdateTask struct{ Task modelTask } }
	c.Must(t, updateTaskMutation, map[string]any{"id": id, "in": in}, &out)
	return out.UpdateTask.Task
}

// causedEvents returns the task's events with their causation ids.
func (c *client) causedEvents(t *testing.T, id string) []struct {
	ID, Type    string
	ActorID     *string
	CausationID *string
	Data        json.RawMessage
} {
	t.Helper()
	var out struct {
		Task struct {
			Events struct {
				Edges []struct {
					Node struct {
						ID, Type    string
						ActorID     *string
						CausationID *string
						Data        json.RawMessage
					}
				}
			}
		}
	}
	c.Must(t, `query($id: ID!) { task(id: $id) { events(first: 1000) { edges { node { id type actorId causationId data } } } } }`,
		map[string]any{"id": id}, &out)
	var evs []struct {
		ID, Type    string
		ActorID     *string
		CausationID *string
		Data        json.RawMessage
	}
	for _, e := range out.Task.Events.Edges {
		evs = append(evs, e.Node)
	}
	return evs
}

func TestTaskLabelsAndUpdates(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		c := b.anon()
		a := c.createModel(t, map[string]any{"title": "a", "labels": map[string]any{"team": "core", "example.com/tier": "gold", "env": ""}})
		assert.Equal(t, map[string]string{"team": "core", "example.com/tier": "gold", "env": ""}, a.Labels)
		none := c.createModel(t, map[string]any{"title": "none"})
		require.NotNil(t, none.Labels, "labels is {} when none, never null")
		assert.Empty(t, none.Labels)

		for _, bad := range []any{
			map[string]any{"team": 1}, map[string]any{"a b": "x"}, map[string]any{"k": strings.Repeat("v", 64)},
			[]any{"x"}, "team=core", map[string]any{"Bad.Prefix/k": "x"},
		} {
			e := c.Fail(t, apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "bad", "labels": bad}})
			apptest.RequireError(t, e, ipa.EINVALID, ipa.ReasonInvalidLabels)
			e = c.Fail(t, `query($f: TaskFilter) { taskCount(filter: $f) }`, map[string]any{"f": map[string]any{"labels": bad}})
			apptest.RequireError(t, e, ipa.EINVALID, ipa.ReasonInvalidLabels)
		}
		many := map[string]any{}
		for i := range 65 {
			many[fmt.Sprintf("k%d", i)] = "v"
		}
		apptest.RequireError(t, c.Fail(t, apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "many", "labels": many}}), ipa.EINVALID, ipa.ReasonInvalidLabels)

		assert.Equal(t, 1, c.Count(t, map[string]any{"labels": map[string]any{"team": "core"}}))
		assert.Equal(t, 1, c.Count(t, map[string]any{"labels": map[string]any{"team": "core", "env": ""}}))
		assert.Equal(t, 0, c.Count(t, map[string]any{"labels": map[string]any{"team": "core", "env": "prod"}}))
		assert.Equal(t, 2, c.Count(t, map[string]any{"labels": map[string]any{}}))

		// An edit records only what changed.
		deadline := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond).Add(123 * time.Nanosecond)
		u := c.update(t, a.ID, map[string]any{
			"title": "a2", "description": "", "labels": map[string]any{"team": "edge"},
			"restartPolicy": map[string]any{"maxAttempts": 5}, "deadline": deadline.Format(time.RFC3339Nano),
			"metadata": map[string]any{}, // unchanged: {} already
		})
		assert.Equal(t, "a2", u.Title)
		assert.Equal(t, map[string]string{"team": "edge"}, u.Labels)
		assert.Equal(t, 5, u.RestartPolicy.MaxAttempts)
		require.NotNil(t, u.Deadline)
		assert.True(t, deadline.Equal(*u.Deadline), "%v != %v", deadline, *u.Deadline)
		assert.Equal(t, a.Version+1, u.Version)
		evs := c.causedEvents(t, a.ID)
		last := evs[len(evs)-1]
		assert.Equal(t, ipa.EventTaskUpdated, last.Type)
		var data map[string]any
		require.NoError(t, json.Unmarshal(last.Data, &data))
		assert.ElementsMatch(t, []string{"title", "labels", "restartPolicy", "deadline"}, keys(data), "only changed fields: %s", last.Data)
		assert.Equal(t, 0, c.Count(t, map[string]any{"labels": map[string]any{"team": "core"}}), "old labels no longer match")
		assert.Equal(t, 1, c.Count(t, map[string]any{"labels": map[string]any{"team": "edge"}}))

		// Nothing changed: no event, the task as it is.
		same := c.update(t, a.ID, map[string]any{"title": " a2 ", "labels": map[string]any{"team": "edge"}})
		assert.Equal(t, u.Version, same.Version)
		assert.Len(t, c.causedEvents(t, a.ID), len(evs))
		same = c.update(t, a.ID, map[string]any{})
		assert.Equal(t, u.Version, same.Version)

		apptest.RequireError(t, c.Fail(t, updateTaskMutation, map[string]any{"id": a.ID, "in": map[string]any{"title": "x"}, "v": a.Version}),
			ipa.ECONFLICT, ipa.ReasonVersionConflict)
		apptest.RequireError(t, c.Fail(t, updateTaskMutation, map[string]any{"id": a.ID, "in": map[string]any{"title": " "}}), ipa.EINVALID, ipa.ReasonInvalidTitle)
		apptest.RequireError(t, c.Fail(t, updateTaskMutation, map[string]any{"id": a.ID, "in": map[string]any{"labels": map[string]any{"k": 1}}}), ipa.EINVALID, ipa.ReasonInvalidLabels)
		apptest.RequireError(t, c.Fail(t, updateTaskMutation, map[string]any{"id": a.ID, "in": map[string]any{"restartPolicy": map[string]any{"maxAttempts": -1}}}), ipa.EINVALID, ipa.ReasonInvalidArgument)
		apptest.RequireError(t, c.Fail(t, updateTaskMutation, map[string]any{"id": "00000000-0000-0000-0000-000000000000", "in": map[string]any{"title": "x"}}), ipa.ENOTFOUND, ipa.ReasonTaskNotFound)
		u2 := c.update(t, a.ID, map[string]any{"title": "a3"})
		assert.Equal(t, u.Version+1, u2.Version)

		c.Must(t, `mutation($id: ID!) { cancelTask(taskId: $id, reason: "done") { task { id } } }`, map[string]any{"id": none.ID}, nil)
		apptest.RequireError(t, c.Fail(t, updateTaskMutation, map[string]any{"id": none.ID, "in": map[string]any{"title": "x"}}), ipa.ECONFLICT, ipa.ReasonAlreadyCancelled)
		c.Must(t, `mutation($id: ID!) { completeTask(taskId: $id) { task { id } } }`, map[string]any{"id": a.ID}, nil)
		apptest.RequireError(t, c.Fail(t, updateTaskMutation, map[string]any{"id": a.ID, "in": map[string]any{"title": "x"}}), ipa.ECONFLICT, ipa.ReasonAlreadyCompleted)

		// podState: a crash as the supervisor records it.
		crashed := c.createModel(t, map[string]any{"title": "crash"})
		_, err := b.Store.Append(context.Background(), ipa.AppendRequest{TaskID: crashed.ID, ExpectedVersion: ipa.AnyVersion, Actor: "supervisor",
			Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
				return []ipa.NewEvent{{Type: ipa.EventPodStarted}, {Type: ipa.EventPodCrashed}}, nil
			}})
		require.NoError(t, err)
		assert.Equal(t, 1, c.Count(t, map[string]any{"podState": []string{"CRASHED"}}))
		assert.Equal(t, 2, c.Count(t, map[string]any{"podState": []string{"STOPPED"}}))
		assert.Equal(t, 3, c.Count(t, map[string]any{"podState": []string{"STOPPED", "CRASHED"}}))
		assert.Equal(t, 0, c.Count(t, map[string]any{"podState": []string{"RUNNING"}}))

		checkReproject(t, b.Store)

		// Minting a token closes the anonymous door: last.
		_, viewer := b.Mint(t, "watcher", ipa.RoleViewer)
		apptest.RequireError(t, b.as(viewer).Fail(t, updateTaskMutation, map[string]any{"id": a.ID, "in": map[string]any{"title": "x"}}), ipa.EFORBIDDEN, "")
	})
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// checkReproject requires the projection to be exactly what the events fold to.
func checkReproject(t *testing.T, s *store.Store) {
	t.Helper()
	changed, err := s.Reproject(context.Background(), true)
	require.NoError(t, err)
	assert.Zero(t, changed, "reproject --check finds rows that differ from their events")
}

func TestTaskParents(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		c := b.anon()
		root := c.createModel(t, map[string]any{"title": "root"})
		var kids []modelTask
		for i := range 5 {
			k := c.createModel(t, map[string]any{"title": fmt.Sprintf("kid %d", i), "parentId": root.ID, "labels": map[string]any{"n": fmt.Sprint(i % 2)}})
			require.NotNil(t, k.Parent)
			assert.Equal(t, root.ID, k.Parent.ID)
			kids = append(kids, k)
		}
		grandkid := c.createModel(t, map[string]any{"title": "grandkid", "parentId": kids[0].ID})
		assert.Nil(t, root.Parent)

		for _, bad := range []string{"00000000-0000-0000-0000-000000000000", "not-a-uuid"} {
			apptest.RequireError(t, c.Fail(t, apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "orphan", "parentId": bad}}), ipa.EINVALID, ipa.ReasonInvalidParent)
		}
		// Depth: the root is at 1; a chain of 8 is fine, a 9th is refused.
		chain := root.ID
		for depth := 2; depth <= 8; depth++ {
			chain = c.createModel(t, map[string]any{"title": fmt.Sprintf("depth %d", depth), "parentId": chain}).ID
		}
		apptest.RequireError(t, c.Fail(t, apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "depth 9", "parentId": chain}}), ipa.EINVALID, ipa.ReasonInvalidParent)

		// children: forward and backward pages agree; filter and parentId filter.
		type conn struct {
			Edges []struct {
				Cursor string
				Node   struct{ ID string }
			}
			PageInfo struct {
				HasNextPage, HasPreviousPage bool
				StartCursor, EndCursor       *string
			}
			TotalCount int
		}
		children := func(args string, vars map[string]any) conn {
			t.Helper()
			var out struct{ Task struct{ Children conn } }
			types := map[string]string{"first": "Int", "after": "String", "last": "Int", "before": "String", "f": "TaskFilter"}
			decl := "$id: ID!"
			for k := range vars {
				decl += ", $" + k + ": " + types[k]
			}
			vars["id"] = root.ID
			c.Must(t, `query(`+decl+`) { task(id: $id) {
				children(`+args+`) { edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } totalCount } } }`, vars, &out)
			return out.Task.Children
		}
		all := children("first: $first", map[string]any{"first": 100})
		// root has 5 kids plus the first link of the depth chain, most
		// recently updated (here: created) first.
		require.Len(t, all.Edges, 6)
		assert.Equal(t, 6, all.TotalCount)
		for i, k := range kids {
			assert.Equal(t, k.ID, all.Edges[4-i+1].Node.ID)
		}
		var back []string
		p := children("last: $last", map[string]any{"last": 2})
		assert.True(t, p.PageInfo.HasPreviousPage)
		assert.False(t, p.PageInfo.HasNextPage)
		for {
			var ids []string
			for _, e := range p.Edges {
				ids = append(ids, e.Node.ID)
			}
			back = append(ids, back...)
			if !p.PageInfo.HasPreviousPage {
				break
			}
			p = children("last: $last, before: $before", map[string]any{"last": 2, "before": *p.PageInfo.StartCursor})
			assert.True(t, p.PageInfo.HasNextPage)
		}
		var fwd []string
		for _, e := range all.Edges {
			fwd = append(fwd, e.Node.ID)
		}
		assert.Equal(t, fwd, back, "last/before walks the same list backwards")
		after := children("first: $first, after: $after", map[string]any{"first": 2, "after": all.Edges[1].Cursor})
		require.Len(t, after.Edges, 2)
		assert.Equal(t, kids[3].ID, after.Edges[0].Node.ID)
		before := children("last: $last, before: $before", map[string]any{"last": 10, "before": all.Edges[2].Cursor})
		require.Len(t, before.Edges, 2)
		assert.Equal(t, fwd[:2], []string{before.Edges[0].Node.ID, before.Edges[1].Node.ID})
		apptest.RequireError(t, c.Fail(t, `query($id: ID!) { task(id: $id) { children(first: 1, last: 1) { totalCount } } }`, map[string]any{"id": root.ID}), ipa.EINVALID, ipa.ReasonInvalidArgument)
		filtered := children("first: $first, filter: $f", map[string]any{"first": 10, "f": map[string]any{"labels": map[string]any{"n": "1"}}})
		assert.Len(t, filtered.Edges, 2)
		assert.Equal(t, 2, filtered.TotalCount)
		assert.Equal(t, 6, c.Count(t, map[string]any{"parentId": root.ID}))
		assert.Equal(t, 1, c.Count(t, map[string]any{"parentId": kids[0].ID}))

		// completeTask waits for the children; cancelTask takes them along.
		apptest.RequireError(t, c.Fail(t, `mutation($id: ID!) { completeTask(taskId: $id) { task { id } } }`, map[string]any{"id": root.ID}), ipa.ECONFLICT, ipa.ReasonOpenChildren)
		assert.Equal(t, "INACTIVE", c.getModel(t, root.ID).Status, "a refused complete changes nothing")
		c.Must(t, `mutation($id: ID!) { completeTask(taskId: $id) { task { id } } }`, map[string]any{"id": kids[4].ID}, nil)
		apptest.RequireError(t, c.Fail(t, apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "late", "parentId": kids[4].ID}}), ipa.EINVALID, ipa.ReasonInvalidParent)

		var out struct{ CancelTask struct{ Task modelTask } }
		c.Must(t, `mutation($id: ID!) { cancelTask(taskId: $id, reason: "scrapped") { task { `+modelFields+` } } }`, map[string]any{"id": root.ID}, &out)
		assert.Equal(t, "CANCELLED", out.CancelTask.Task.Status)
		rootEvs := c.causedEvents(t, root.ID)
		cancel := rootEvs[len(rootEvs)-1]
		require.Equal(t, ipa.EventTaskCancelled, cancel.Type)
		// Every open descendant is cancelled, each caused by its parent's cancellation.
		check := func(id, parentCancel string) string {
			evs := c.causedEvents(t, id)
			last := evs[len(evs)-1]
			require.Equal(t, ipa.EventTaskCancelled, last.Type, id)
			require.NotNil(t, last.CausationID)
			assert.Equal(t, parentCancel, *last.CausationID)
			assert.JSONEq(t, `"scrapped"`, string(mustField(t, last.Data, "reason")))
			n := 0
			for _, e := range evs {
				if e.Type == ipa.EventTaskCancelled {
					n++
				}
			}
			assert.Equal(t, 1, n)
			return last.ID
		}
		for _, k := range kids[:4] {
			id := check(k.ID, cancel.ID)
			if k.ID == kids[0].ID {
				check(grandkid.ID, id)
			}
		}
		assert.Equal(t, "COMPLETED", c.getModel(t, kids[4].ID).Status, "closed children stay as they were")
		assert.Zero(t, c.Count(t, map[string]any{"status": []string{"ACTIVE", "INACTIVE"}}), "the whole tree is closed")

		checkReproject(t, b.Store)
	})
}

func mustField(t *testing.T, raw json.RawMessage, name string) json.RawMessage {
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &m))
	return m[name]
}

// cancellations returns the task_cancelled events of a task.
func cancellations(t *testing.T, s *store.Store, id string) []ipa.Event {
	t.Helper()
	evs, err := s.ReadEvents(context.Background(), ipa.EventQuery{TaskID: id, Types: []string{ipa.EventTaskCancelled}, Limit: 10})
	require.NoError(t, err)
	return evs
}

func waitCancelled(t *testing.T, s *store.Store, id string, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		tk, err := s.GetTask(context.Background(), id)
		return err == nil && tk.Status == ipa.StatusCancelled
	}, within, 20*time.Millisecond, "task %s was not cancelled at its deadline", id)
}

func requireDeadlineCancel(t *testing.T, s *store.Store, id string) {
	t.Helper()
	evs := cancellations(t, s, id)
	require.Len(t, evs, 1, "cancelled exactly once")
	var d ipa.TaskCancelledData
	require.NoError(t, json.Unmarshal(evs[0].Data, &d))
	assert.Equal(t, "deadline exceeded", d.Reason)
	assert.Equal(t, "system:deadline", evs[0].ActorID)
}

func TestTaskDeadlines(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		t.Run("CancelledOnce", func(t *testing.T) {
			t.Parallel()
			b := setup(t, backend)
			c := b.anon()
			at := time.Now().Add(time.Second)
			tk := c.createModel(t, map[string]any{"title": "soon", "deadline": at.Format(time.RFC3339Nano)})
			child := c.createModel(t, map[string]any{"title": "child", "parentId": tk.ID})
			later := c.createModel(t, map[string]any{"title": "later", "deadline": time.Now().Add(time.Hour).Format(time.RFC3339Nano)})
			moved := c.createModel(t, map[string]any{"title": "moved", "deadline": at.Format(time.RFC3339Nano)})
			c.update(t, moved.ID, map[string]any{"deadline": time.Now().Add(time.Hour).Format(time.RFC3339Nano)})
			assert.Equal(t, 3, c.Count(t, map[string]any{"deadlineBefore": time.Now().Add(2 * time.Hour).Format(time.RFC3339Nano), "status": []string{"INACTIVE"}}))
			assert.Equal(t, 1, c.Count(t, map[string]any{"deadlineBefore": time.Now().Add(time.Minute).Format(time.RFC3339Nano)}))

			waitCancelled(t, b.Store, tk.ID, 10*time.Second)
			assert.False(t, time.Now().Before(at), "cancelled before its deadline")
			requireDeadlineCancel(t, b.Store, tk.ID)
			// Its open child went with it, caused by the parent's cancellation.
			ce := cancellations(t, b.Store, child.ID)
			require.Len(t, ce, 1)
			assert.Equal(t, cancellations(t, b.Store, tk.ID)[0].ID, ce[0].CausationID)
			// A few more sweeps change nothing.
			time.Sleep(300 * time.Millisecond)
			requireDeadlineCancel(t, b.Store, tk.ID)
			for _, id := range []string{later.ID, moved.ID} {
				assert.Equal(t, "INACTIVE", c.getModel(t, id).Status)
			}
			checkReproject(t, b.Store)
		})
		t.Run("AcrossRestart", func(t *testing.T) {
			t.Parallel()
			url := dbtest.URL(t, backend)
			quick := func(c *app.Config) { c.DeadlineInterval = 50 * time.Millisecond }
			first := apptest.New(t, url, auth.ModeAuto, quick)
			ctx := ipa.WithActor(context.Background(), ipa.Actor{ID: "alice", Role: ipa.RoleOperator})
			at := time.Now().Add(time.Second)
			tk, err := first.Services.TaskService.CreateTask(ctx, ipa.CreateTaskInput{Title: "restart", Deadline: &at})
			require.NoError(t, err)
			require.NoError(t, first.Close())
			time.Sleep(time.Until(at) + 200*time.Millisecond) // the deadline passes while no server runs
			second := apptest.New(t, url, auth.ModeAuto, quick)
			waitCancelled(t, second.Store, tk.ID, 10*time.Second)
			requireDeadlineCancel(t, second.Store, tk.ID)
			require.NoError(t, second.Close())
			third := apptest.New(t, url, auth.ModeAuto, quick)
			time.Sleep(300 * time.Millisecond)
			requireDeadlineCancel(t, third.Store, tk.ID)
		})
		t.Run("ManyAtOnce", func(t *testing.T) {
			// One sweep cancels a batch several at a time: parents and their
			// children due together, each cancelled exactly once, whichever
			// gets there first.
			t.Parallel()
			url := dbtest.URL(t, backend)
			a := apptest.New(t, url, auth.ModeAuto, func(c *app.Config) { c.DeadlineInterval = 20 * time.Millisecond })
			ctx := ipa.WithActor(context.Background(), ipa.Actor{ID: "alice", Role: ipa.RoleOperator})
			at := time.Now().Add(time.Second)
			var ids []string
			for i := range 15 {
				p, err := a.Services.TaskService.CreateTask(ctx, ipa.CreateTaskInput{Title: fmt.Sprintf("p%d", i), Deadline: &at})
				require.NoError(t, err)
				c, err := a.Services.TaskService.CreateTask(ctx, ipa.CreateTaskInput{Title: fmt.Sprintf("c%d", i), ParentID: &p.ID, Deadline: &at})
				require.NoError(t, err)
				ids = append(ids, p.ID, c.ID)
			}
			for _, id := range ids {
				waitCancelled(t, a.Store, id, 10*time.Second)
			}
			time.Sleep(200 * time.Millisecond)
			for _, id := range ids {
				evs := cancellations(t, a.Store, id)
				require.Len(t, evs, 1, "cancelled exactly once")
				var d ipa.TaskCancelledData
				require.NoError(t, json.Unmarshal(evs[0].Data, &d))
				assert.Equal(t, "deadline exceeded", d.Reason)
			}
			checkReproject(t, a.Store)
		})
		if backend != "postgres" {
			return
		}
		t.Run("TwoServers", func(t *testing.T) {
			t.Parallel()
			url := dbtest.URL(t, backend)
			quick := func(c *app.Config) { c.DeadlineInterval = 20 * time.Millisecond }
			one := apptest.New(t, url, auth.ModeAuto, func(c *app.Config) { quick(c); c.InstanceID = "one" })
			two := apptest.New(t, url, auth.ModeAuto, func(c *app.Config) { quick(c); c.InstanceID = "two" })
			ctx := ipa.WithActor(context.Background(), ipa.Actor{ID: "alice", Role: ipa.RoleOperator})
			at := time.Now().Add(time.Second)
			var ids []string
			for i := range 20 {
				tk, err := one.Services.TaskService.CreateTask(ctx, ipa.CreateTaskInput{Title: fmt.Sprintf("t%d", i), Deadline: &at})
				require.NoError(t, err)
				ids = append(ids, tk.ID)
			}
			for _, id := range ids {
				waitCancelled(t, two.Store, id, 10*time.Second)
			}
			time.Sleep(200 * time.Millisecond)
			for _, id := range ids {
				requireDeadlineCancel(t, one.Store, id)
			}
		})
	})
}
