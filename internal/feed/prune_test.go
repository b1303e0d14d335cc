package feed_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/feed"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// A deleted stream leaves a hole in the global log. A subscriber starting
// before the hole gets the events after it; one that is live when a stream
// is written and deleted behind its back (as another instance's writes look:
// a bare notice) moves past the hole. Neither stalls waiting for positions
// that will never come (next fails on a hang).
func TestEventsAcrossDeletedHistory(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		first := e.create(t, "before")
		doomed := e.create(t, "doomed")
		to := nextPhase(doomed.Phase)
		e.toggle(t, doomed.ID, &to)
		closed, err := e.tasks.CancelTask(e.ctx, doomed.ID, "done", nil)
		require.NoError(t, err)
		after := e.create(t, "after")
		start := e.readAll(t)[0].Position // first's task_created
		require.Equal(t, first.ID, e.readAll(t)[0].TaskID)

		removed, err := e.store.DeleteTask(e.ctx, doomed.ID)
		require.NoError(t, err)
		assert.Equal(t, closed.Version, removed.Events)

		sub, err := e.feed.Events(e.ctx, &start, nil)
		require.NoError(t, err)
		got := next(t, sub)
		assert.Equal(t, after.ID, got.TaskID, "the first event after position %d is past the hole", start)
		assert.Equal(t, ipa.EventTaskCreated, got.Type)

		// Live now. A task is created, closed and deleted without publishing.
		id := uuid.NewString()
		_, err = e.store.CreateTask(e.ctx, ipa.CreateTaskRequest{TaskID: id, Actor: "t",
			Created: ipa.TaskCreatedData{Title: "quiet", Runtime: "demo", RestartPolicy: ipa.DefaultRestartPolicy()}})
		require.NoError(t, err)
		res, err := e.store.Append(e.ctx, ipa.AppendRequest{TaskID: id, ExpectedVersion: ipa.AnyVersion, Actor: "t",
			Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
				return []ipa.NewEvent{{Type: ipa.EventTaskCompleted, Data: ipa.TaskCompletedData{}}}, nil
			}})
		require.NoError(t, err)
		_, err = e.store.DeleteTask(e.ctx, id)
		require.NoError(t, err)
		e.broker.Publish(feed.Commit{TaskID: id, Version: 2, Position: res.Events[0].Position})

		last := e.create(t, "last")
		got = next(t, sub)
		assert.Equal(t, last.ID, got.TaskID, "the next event after the hole")
		assert.Greater(t, got.Position, res.Events[0].Position)
	})
}
