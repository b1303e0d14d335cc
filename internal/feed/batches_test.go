package feed_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/feed"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// batchSizes are the ways the no-gap tests subscribe, one per subscriber in
// turn: 0 is TaskEvents/Events (one event at a time), the others are the
// batched streams with that batchSize.
var batchSizes = []int{0, 1, 7, 100, feed.MaxBatchSize}

// taskEvents subscribes to the task one event at a time (batch 0) or in
// batches, which it checks and unpacks into single events.
func (e *env) taskEvents(t testing.TB, ctx context.Context, id string, after *int64, batch int) (<-chan *ipa.Event, error) {
	if batch == 0 {
		return e.feed.TaskEvents(ctx, id, after)
	}
	ch, err := e.feed.TaskEventBatches(ctx, id, after, batch)
	if err != nil {
		return nil, err
	}
	return unbatch(t, ch, batch, func(a, b *ipa.Event) bool { return b.Version == a.Version+1 }), nil
}

// events is taskEvents for the global feed. Within a batch positions only
// need to increase: a type filter leaves holes.
func (e *env) events(t testing.TB, ctx context.Context, after *int64, types []string, batch int) (<-chan *ipa.Event, error) {
	if batch == 0 {
		return e.feed.Events(ctx, after, types)
	}
	ch, err := e.feed.EventBatches(ctx, after, types, batch)
	if err != nil {
		return nil, err
	}
	return unbatch(t, ch, batch, func(a, b *ipa.Event) bool {
		return b.Position > a.Position && (len(types) > 0 || b.Position == a.Position+1)
	}), nil
}

// unbatch forwards the events of each batch one by one, failing the test
// when a batch is empty, over size, or not consecutive by follows. It stops
// when in closes (the subscription's context ended).
func unbatch(t testing.TB, in <-chan []*ipa.Event, size int, follows func(a, b *ipa.Event) bool) <-chan *ipa.Event {
	out := make(chan *ipa.Event)
	go func() {
		defer close(out)
		for b := range in {
			if len(b) < 1 || len(b) > size {
				t.Errorf("a batch of %d events; batchSize %d", len(b), size)
			}
			for i, ev := range b {
				if i > 0 && !follows(b[i-1], ev) {
					t.Errorf("batch not consecutive: version %d position %d after version %d position %d",
						ev.Version, ev.Position, b[i-1].Version, b[i-1].Position)
				}
				out <- ev
			}
		}
	}()
	return out
}

// Catching up fills batches to batchSize from the store; once caught up, a
// live commit is sent at once in a batch of its own, without waiting for
// more events to fill it.
func TestBatchesCatchUpFullLiveAtOnce(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		task := e.create(t, "batches")
		res := e.appendQuietly(t, task.ID, 2500) // versions 2..2501, unpublished
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		zero := int64(0)

		stream, err := e.feed.TaskEventBatches(ctx, task.ID, &zero, 1000)
		require.NoError(t, err)
		global, err := e.feed.EventBatches(ctx, &zero, nil, 1000)
		require.NoError(t, err)
		head, err := e.store.HeadPosition(e.ctx)
		require.NoError(t, err)

		var got []*ipa.Event
		for _, want := range []int{1000, 1000, 501} {
			b := next(t, stream)
			require.Len(t, b, want)
			got = append(got, b...)
		}
		assert.Equal(t, span(1, 2501), versions(got))
		var gotGlobal []*ipa.Event
		for int64(len(gotGlobal)) < head {
			b := next(t, global)
			require.LessOrEqual(t, len(b), 1000)
			gotGlobal = append(gotGlobal, b...)
		}
		assert.Equal(t, span(1, head), positions(gotGlobal))

		to := nextPhase(res.Task.Phase)
		moved := e.toggle(t, task.ID, &to)
		require.NotNil(t, moved)
		b := next(t, stream)
		require.Len(t, b, 1)
		assert.Equal(t, moved.Version, b[0].Version)
		b = next(t, global)
		require.Len(t, b, 1)
		assert.Equal(t, head+1, b[0].Position)
	})
}

// A batch size outside 1..1000 is refused before anything listens; so is a
// negative version or an unknown task.
func TestBatchesRefuseBadArguments(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		task := e.create(t, "bad")
		before := e.broker.Subscribers()
		for _, n := range []int{0, -1, feed.MaxBatchSize + 1} {
			_, err := e.feed.TaskEventBatches(e.ctx, task.ID, nil, n)
			assert.Equal(t, ipa.EINVALID, ipa.ErrorCode(err), "batchSize %d: %v", n, err)
			_, err = e.feed.EventBatches(e.ctx, nil, nil, n)
			assert.Equal(t, ipa.EINVALID, ipa.ErrorCode(err), "batchSize %d: %v", n, err)
		}
		_, err := e.feed.TaskEventBatches(e.ctx, task.ID, ptr(int64(-1)), 10)
		assert.Equal(t, ipa.EINVALID, ipa.ErrorCode(err))
		_, err = e.feed.TaskEventBatches(e.ctx, "0190f0f0-0000-7000-8000-000000000000", nil, 10)
		assert.Equal(t, ipa.ENOTFOUND, ipa.ErrorCode(err))
		assert.Equal(t, before, e.broker.Subscribers())
	})
}

// A batched subscriber that stops reading while more commits are published
// than its buffer holds gets every event exactly once afterwards, in
// batches no larger than asked, and never slows the writers.
func TestBatchesSlowSubscriber(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		const writes = 400 // > subscriberBuffer (256) commits
		task := e.create(t, "slow")
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		zero := int64(0)
		slow, err := e.taskEvents(t, ctx, task.ID, &zero, 3)
		require.NoError(t, err)
		slowGlobal, err := e.events(t, ctx, &zero, nil, 50)
		require.NoError(t, err)
		requireSubscribers(t, e.broker, 2)

		final := int64(1 + writes)
		to := ipa.PhasePlanning
		for range writes { // would hang here if Publish waited for the slow ones
			require.NotNil(t, e.toggle(t, task.ID, &to))
		}
		got := until(t, slow, func(ev *ipa.Event) bool { return ev.Version >= final })
		assert.Equal(t, span(1, final), versions(got))
		gotGlobal := until(t, slowGlobal, func(ev *ipa.Event) bool { return ev.Version >= final })
		assert.Equal(t, positions(e.readAll(t)), positions(gotGlobal))
	})
}

// A batched subscription blocked on a send ends with its context.
func TestBatchesEndWithContext(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		task := e.create(t, "ends")
		e.appendQuietly(t, task.ID, 1200)
		zero := int64(0)
		ctx, cancel := context.WithCancel(e.ctx)
		stream, err := e.feed.TaskEventBatches(ctx, task.ID, &zero, 1)
		require.NoError(t, err)
		next(t, stream) // it is now blocked sending version 2 (or later)
		global, err := e.feed.EventBatches(ctx, nil, nil, 10)
		require.NoError(t, err)
		requireSubscribers(t, e.broker, 2)
		cancel()
		requireClosed(t, stream)
		requireClosed(t, global)
		requireSubscribers(t, e.broker, 0)
	})
}
