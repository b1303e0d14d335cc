package graph_test

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/ipa"
)

type eventConn struct {
	Edges []struct {
		Cursor string
		Node   struct {
			ID, TaskID, Type, Position string
			Version                    int
		}
	}
	PageInfo struct {
		HasNextPage, HasPreviousPage bool
		StartCursor, EndCursor       *string
	}
	TotalCount int
}

func (c eventConn) versions() []int {
	out := make([]int, len(c.Edges))
	for i, e := range c.Edges {
		out[i] = e.Node.Version
	}
	return out
}

// TestHistoryPaging: Query.events pages the global log by position both
// ways; Task.events and tasks page backwards as Relay says (oldest first
// within a page, flags right, first and last exclusive).
func TestHistoryPaging(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		c := b.anon()
		a := c.CreateTitled(t, "a")
		other := c.CreateTitled(t, "other")
		for range 3 {
			c.transition(t, a.ID, "PLANNING")
			c.transition(t, a.ID, "SPEC_CLARIFICATION")
		}
		// a: versions 1..7; other: 1.

		const taskEvents = `query($id: ID!, $first: Int, $last: Int, $after: String, $before: String, $types: [String!]) {
			task(id: $id) { events(first: $first, last: $last, after: $after, before: $before, types: $types) {
				edges { cursor node { id taskId type position version } }
				pageInfo { hasNextPage hasPreviousPage startCursor endCursor } totalCount } } }`
		var tail struct{ Task struct{ Events eventConn } }
		c.Must(t, taskEvents, map[string]any{"id": a.ID, "last": 3}, &tail)
		assert.Equal(t, []int{5, 6, 7}, tail.Task.Events.versions(), "the tail, oldest first")
		assert.True(t, tail.Task.Events.PageInfo.HasPreviousPage)
		assert.False(t, tail.Task.Events.PageInfo.HasNextPage)
		var prev struct{ Task struct{ Events eventConn } }
		c.Must(t, taskEvents, map[string]any{"id": a.ID, "last": 3, "before": *tail.Task.Events.PageInfo.StartCursor}, &prev)
		assert.Equal(t, []int{2, 3, 4}, prev.Task.Events.versions())
		assert.True(t, prev.Task.Events.PageInfo.HasPreviousPage)
		assert.True(t, prev.Task.Events.PageInfo.HasNextPage)
		c.Must(t, taskEvents, map[string]any{"id": a.ID, "last": 3, "before": *prev.Task.Events.PageInfo.StartCursor}, &prev)
		assert.Equal(t, []int{1}, prev.Task.Events.versions())
		assert.False(t, prev.Task.Events.PageInfo.HasPreviousPage)
		c.Must(t, taskEvents, map[string]any{"id": a.ID, "last": 2, "types": []string{ipa.EventPhaseChanged}}, &tail)
		assert.Equal(t, []int{6, 7}, tail.Task.Events.versions())
		assert.Equal(t, 6, tail.Task.Events.TotalCount)
		// Literal `last` with the schema's default first: not "both given".
		var lit struct{ Task struct{ Events eventConn } }
		c.Must(t, `query($id: ID!) { task(id: $id) { events(last: 1) { edges { node { version } } } } }`, map[string]any{"id": a.ID}, &lit)
		assert.Equal(t, []int{7}, lit.Task.Events.versions())

		e := c.Fail(t, taskEvents, map[string]any{"id": a.ID, "first": 2, "last": 2})
		apptest.RequireError(t, e, ipa.EINVALID, ipa.ReasonInvalidArgument)
		e = c.Fail(t, `query($id: ID!) { task(id: $id) { events(first: 1, last: 1) { totalCount } } }`, map[string]any{"id": a.ID})
		apptest.RequireError(t, e, ipa.EINVALID, ipa.ReasonInvalidArgument)
		e = c.Fail(t, taskEvents, map[string]any{"id": a.ID, "last": 1001})
		apptest.RequireError(t, e, ipa.EINVALID, ipa.ReasonInvalidArgument)

		// The global log, forward from a position and backward from the end.
		const logQuery = `query($after: String, $first: Int, $last: Int, $before: String, $types: [String!], $taskId: ID) {
			events(afterPosition: $after, first: $first, last: $last, before: $before, types: $types, taskId: $taskId) {
				edges { cursor node { id taskId type position version } }
				pageInfo { hasNextPage hasPreviousPage startCursor endCursor } totalCount } }`
		var all []string
		var after any
		for pages := 0; ; pages++ {
			require.Less(t, pages, 10)
			var page struct{ Events eventConn }
			c.Must(t, logQuery, map[string]any{"after": after, "first": 3}, &page)
			for _, e := range page.Events.Edges {
				assert.Equal(t, e.Node.Position, e.Cursor, "the cursor is the position")
				all = append(all, e.Node.Position)
			}
			if !page.Events.PageInfo.HasNextPage {
				break
			}
			after = *page.Events.PageInfo.EndCursor
		}
		require.Len(t, all, 8)
		for i := 1; i < len(all); i++ {
			p, _ := strconv.ParseInt(all[i-1], 10, 64)
			q, _ := strconv.ParseInt(all[i], 10, 64)
			assert.Less(t, p, q)
		}
		var last struct{ Events eventConn }
		c.Must(t, logQuery, map[string]any{"last": 2}, &last)
		require.Len(t, last.Events.Edges, 2)
		assert.Equal(t, all[6:], []string{last.Events.Edges[0].Node.Position, last.Events.Edges[1].Node.Position})
		assert.True(t, last.Events.PageInfo.HasPreviousPage)
		assert.Equal(t, 8, last.Events.TotalCount)
		var one struct{ Events eventConn }
		c.Must(t, logQuery, map[string]any{"taskId": other.ID}, &one)
		require.Len(t, one.Events.Edges, 1)
		assert.Equal(t, other.ID, one.Events.Edges[0].Node.TaskID)
		assert.Equal(t, 1, one.Events.TotalCount)
		c.Must(t, logQuery, map[string]any{"types": []string{ipa.EventTaskCreated}}, &one)
		assert.Len(t, one.Events.Edges, 2)
		e = c.Fail(t, logQuery, map[string]any{"after": "x"})
		apptest.RequireError(t, e, ipa.EINVALID, ipa.ReasonInvalidArgument)
		e = c.Fail(t, logQuery, map[string]any{"first": 0})
		apptest.RequireError(t, e, ipa.EINVALID, ipa.ReasonInvalidArgument)

		// tasks backwards: the last page of the default order, then the one before.
		const tasksQuery = `query($last: Int, $before: String) { tasks(last: $last, before: $before) {
			edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`
		var tp taskPage
		c.Must(t, tasksQuery, map[string]any{"last": 1}, &tp)
		require.Len(t, tp.Tasks.Edges, 1)
		assert.Equal(t, other.ID, tp.Tasks.Edges[0].Node.ID, "UPDATED_AT DESC ends with the least recently updated")
		assert.True(t, tp.Tasks.PageInfo.HasPreviousPage)
		assert.False(t, tp.Tasks.PageInfo.HasNextPage)
		c.Must(t, tasksQuery, map[string]any{"last": 5, "before": *tp.Tasks.PageInfo.StartCursor}, &tp)
		require.Len(t, tp.Tasks.Edges, 1)
		assert.Equal(t, a.ID, tp.Tasks.Edges[0].Node.ID)
		assert.False(t, tp.Tasks.PageInfo.HasPreviousPage)
		assert.True(t, tp.Tasks.PageInfo.HasNextPage)
		e = c.Fail(t, `{ tasks(first: 1, last: 1) { totalCount } }`, nil)
		apptest.RequireError(t, e, ipa.EINVALID, ipa.ReasonInvalidArgument)
	})
}

// TestRetention: archiveTask and deleteTask over the API: closed tasks only,
// roles enforced, archived tasks hidden unless asked for, deleted tasks gone
// with their events.
func TestRetention(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		_, adminTok := b.Mint(t, "root", ipa.RoleAdmin)
		_, opTok := b.Mint(t, "op", ipa.RoleOperator)
		_, viewTok := b.Mint(t, "eve", ipa.RoleViewer)
		admin, op, viewer := b.as(adminTok), b.as(opTok), b.as(viewTok)

		open := op.CreateTitled(t, "open")
		done := op.CreateTitled(t, "done")
		op.complete(t, done.ID)

		const archive = `mutation($id: ID!) { archiveTask(taskId: $id) { task { id archived version } } }`
		const del = `mutation($id: ID!) { deleteTask(taskId: $id) { taskId } }`
		apptest.RequireError(t, op.Fail(t, archive, map[string]any{"id": open.ID}), ipa.ECONFLICT, ipa.ReasonNotClosed)
		apptest.RequireError(t, viewer.Fail(t, archive, map[string]any{"id": done.ID}), ipa.EFORBIDDEN, "")
		apptest.RequireError(t, op.Fail(t, archive, map[string]any{"id": "00000000-0000-0000-0000-000000000001"}), ipa.ENOTFOUND, ipa.ReasonTaskNotFound)

		var arch struct {
			ArchiveTask struct {
				Task struct {
					ID       string
					Archived bool
					Version  int
				}
			}
		}
		op.Must(t, archive, map[string]any{"id": done.ID}, &arch)
		assert.True(t, arch.ArchiveTask.Task.Archived)
		v := arch.ArchiveTask.Task.Version
		op.Must(t, archive, map[string]any{"id": done.ID}, &arch)
		assert.Equal(t, v, arch.ArchiveTask.Task.Version, "archiving again appends nothing")
		evs := op.Events(t, done.ID)
		assert.Equal(t, ipa.EventTaskArchived, evs[len(evs)-1].Type)

		assert.Equal(t, 1, op.Count(t, nil))
		assert.Equal(t, 0, op.Count(t, map[string]any{"status": []string{"COMPLETED"}}))
		assert.Equal(t, 1, op.Count(t, map[string]any{"archived": true}))
		assert.Equal(t, 1, op.Count(t, map[string]any{"archived": true, "status": []string{"COMPLETED"}}))
		assert.Equal(t, 1, op.Count(t, map[string]any{"archived": true, "createdBy": "op"}))
		var tp taskPage
		op.Must(t, `{ tasks { totalCount edges { node { id } } } }`, nil, &tp)
		require.Len(t, tp.Tasks.Edges, 1)
		assert.Equal(t, open.ID, tp.Tasks.Edges[0].Node.ID)
		assert.Equal(t, 1, tp.Tasks.TotalCount)

		apptest.RequireError(t, op.Fail(t, del, map[string]any{"id": done.ID}), ipa.EFORBIDDEN, "")
		apptest.RequireError(t, admin.Fail(t, del, map[string]any{"id": open.ID}), ipa.ECONFLICT, ipa.ReasonNotClosed)
		var gone struct{ DeleteTask struct{ TaskID string } }
		admin.Must(t, del, map[string]any{"id": done.ID}, &gone)
		assert.Equal(t, done.ID, gone.DeleteTask.TaskID)
		var got struct{ Task *struct{ ID string } }
		op.Must(t, `query($id: ID!) { task(id: $id) { id } }`, map[string]any{"id": done.ID}, &got)
		assert.Nil(t, got.Task)
		var log struct{ Events eventConn }
		op.Must(t, `query($id: ID!) { events(taskId: $id) { totalCount edges { node { id } } } }`, map[string]any{"id": done.ID}, &log)
		assert.Zero(t, log.Events.TotalCount)
		assert.Empty(t, log.Events.Edges)
		apptest.RequireError(t, admin.Fail(t, del, map[string]any{"id": done.ID}), ipa.ENOTFOUND, ipa.ReasonTaskNotFound)
		assert.Equal(t, 0, op.Count(t, map[string]any{"archived": true}))
	})
}
