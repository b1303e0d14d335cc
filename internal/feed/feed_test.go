package feed_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/feed"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// Subscribers join one task's stream at moments spread over a run of
// concurrent writes, from the start and from a version they last saw, one
// event at a time or in batches (batchSizes); each must get exactly the
// versions after it, in order, across the switch from reading the store to
// following live commits.
func TestTaskEventsNoGapNoDuplicate(t *testing.T) {
	t.Parallel()
	forEachBackendReordering(t, func(t *testing.T, e *env) {
		const writes, subscribers = 300, 16
		task := e.create(t, "stream")
		final := int64(1 + writes)

		var claimed, written atomic.Int64
		var wg sync.WaitGroup
		for range 2 { // two writers on the one task: commits may be published out of order
			wg.Go(func() {
				to := ipa.PhasePlanning
				for claimed.Add(1) <= writes {
					if e.toggle(t, task.ID, &to) == nil {
						return
					}
					written.Add(1)
				}
			})
		}
		for i := range subscribers {
			wg.Go(func() {
				for written.Load() < int64(i*writes/subscribers) {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(rand.N(3 * time.Millisecond))
				var after int64 // from the start
				if i%2 == 1 {   // from a version already written
					cur, err := e.store.GetTask(e.ctx, task.ID)
					if !assert.NoError(t, err) {
						return
					}
					after = rand.Int64N(cur.Version + 1)
				}
				ctx, cancel := context.WithCancel(e.ctx)
				defer cancel()
				batch := batchSizes[i%len(batchSizes)]
				ch, err := e.taskEvents(t, ctx, task.ID, &after, batch)
				if !assert.NoError(t, err) {
					return
				}
				got := until(t, ch, func(ev *ipa.Event) bool { return ev.Version >= final })
				assert.Equalf(t, span(after+1, final), versions(got), "subscriber %d after version %d, batches of %d", i, after, batch)
				for _, ev := range got {
					assert.Equal(t, task.ID, ev.TaskID)
				}
			})
		}
		wg.Wait()
	})
}

// The global feed under eight writers on different tasks: every subscriber,
// joining mid-run from the start, from a position, from the live head or with
// a type filter, sees every event after its start exactly once in position
// order — the same events ReadEvents returns for the whole log.
func TestEventsNoGapNoDuplicate(t *testing.T) {
	t.Parallel()
	forEachBackendReordering(t, func(t *testing.T, e *env) {
		const writers, perWriter, subscribers = 8, 40, 12
		tasks := make([]*ipa.Task, writers)
		for i := range tasks {
			tasks[i] = e.create(t, "writer")
		}
		type sub struct {
			after *int64 // nil: live head
			types []string
			batch int // 0: single events
			got   []*ipa.Event
		}
		subs := make([]*sub, subscribers)
		var written atomic.Int64
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				to := ipa.PhasePlanning
				for j := range perWriter {
					if e.toggle(t, tasks[w].ID, &to) == nil {
						return
					}
					if j%10 == 9 {
						if _, err := e.tasks.CreateTask(e.ctx, ipa.CreateTaskInput{Title: "more"}); !assert.NoError(t, err) {
							return
						}
					}
					written.Add(1)
				}
			})
		}
		var subWG sync.WaitGroup
		for i := range subs {
			s := &sub{}
			subs[i] = s
			switch i % 4 {
			case 0: // from the start
				s.after = new(int64)
			case 1, 2: // from a committed position; every other one only task_created
				if i%4 == 2 {
					s.types = []string{ipa.EventTaskCreated}
				}
			case 3: // live head
			}
			subWG.Go(func() {
				for written.Load() < int64(i*writers*perWriter/subscribers) {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(rand.N(3 * time.Millisecond))
				if i%4 == 1 || i%4 == 2 {
					head, err := e.store.HeadPosition(e.ctx)
					if !assert.NoError(t, err) {
						return
					}
					p := rand.Int64N(head + 1)
					s.after = &p
				}
				ctx, cancel := context.WithCancel(e.ctx)
				defer cancel()
				s.batch = batchSizes[i%len(batchSizes)]
				ch, err := e.events(t, ctx, s.after, s.types, s.batch)
				if !assert.NoError(t, err) {
					return
				}
				s.got = until(t, ch, func(ev *ipa.Event) bool { return createdTitle(t, ev) == "sentinel" })
			})
		}
		wg.Wait()
		e.create(t, "sentinel") // the last event; every subscriber's filter takes it
		subWG.Wait()

		all := e.readAll(t)
		head, err := e.store.HeadPosition(e.ctx)
		require.NoError(t, err)
		require.Equal(t, span(1, head), positions(all), "the log itself is dense")
		for i, s := range subs {
			if s.after == nil { // live head: a gap-free tail of the log from wherever it started
				require.NotEmpty(t, s.got, "subscriber %d", i)
				first := s.got[0].Position
				assert.Equalf(t, span(first, head), positions(s.got), "live subscriber %d", i)
				continue
			}
			var want []int64
			for _, ev := range all {
				if ev.Position > *s.after && (len(s.types) == 0 || slices.Contains(s.types, ev.Type)) {
					want = append(want, ev.Position)
				}
			}
			assert.Equalf(t, want, positions(s.got), "subscriber %d after %d types %v batches of %d", i, *s.after, s.types, s.batch)
			for _, ev := range s.got {
				want := all[ev.Position-1]
				assert.Equal(t, want.ID, ev.ID)
				assert.Equal(t, want.Version, ev.Version)
				assert.Equal(t, want.TaskID, ev.TaskID)
			}
		}
	})
}

// With no starting point a subscription replays nothing and begins with the
// next commit; an unknown task is NOT_FOUND and leaves no subscriber behind.
func TestLiveHead(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		task := e.create(t, "head")
		to := ipa.PhasePlanning
		for range 3 {
			e.toggle(t, task.ID, &to)
		}
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()

		t.Run("TaskEvents", func(t *testing.T) {
			ch, err := e.feed.TaskEvents(ctx, task.ID, nil)
			require.NoError(t, err)
			moved := e.toggle(t, task.ID, &to)
			got := next(t, ch)
			assert.Equal(t, int64(5), got.Version)
			assert.Equal(t, moved.Version, got.Version)
		})
		t.Run("Events", func(t *testing.T) {
			head, err := e.store.HeadPosition(e.ctx)
			require.NoError(t, err)
			ch, err := e.feed.Events(ctx, nil, nil)
			require.NoError(t, err)
			e.toggle(t, task.ID, &to)
			got := next(t, ch)
			assert.Equal(t, head+1, got.Position)
		})
		t.Run("UnknownTask", func(t *testing.T) {
			before := e.broker.Subscribers()
			for _, id := range []string{"0190f0f0-0000-7000-8000-000000000000", "not-a-uuid"} {
				_, err := e.feed.TaskEvents(ctx, id, nil)
				assert.Equal(t, ipa.ENOTFOUND, ipa.ErrorCode(err), "%s: %v", id, err)
				_, err = e.feed.TaskEvents(ctx, id, new(int64))
				assert.Equal(t, ipa.ENOTFOUND, ipa.ErrorCode(err), "%s: %v", id, err)
			}
			assert.Equal(t, before, e.broker.Subscribers())
		})
		t.Run("NegativeVersion", func(t *testing.T) {
			_, err := e.feed.TaskEvents(ctx, task.ID, ptr(int64(-1)))
			assert.Equal(t, ipa.EINVALID, ipa.ErrorCode(err))
		})
	})
}

// A subscriber that stops reading while more commits are published than its
// buffer holds still gets every event exactly once afterwards — with no
// further commit to nudge it — and meanwhile writers and a fast subscriber
// never wait for it.
func TestSlowSubscriber(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		const writes = 400 // > subscriberBuffer (256) commits
		task := e.create(t, "slow")
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		zero := int64(0)
		slow, err := e.feed.TaskEvents(ctx, task.ID, &zero)
		require.NoError(t, err)
		slowGlobal, err := e.feed.Events(ctx, &zero, nil)
		require.NoError(t, err)
		fast, err := e.feed.TaskEvents(ctx, task.ID, &zero)
		require.NoError(t, err)
		requireSubscribers(t, e.broker, 3)

		final := int64(1 + writes)
		fastDone := make(chan []*ipa.Event)
		go func() { fastDone <- until(t, fast, func(ev *ipa.Event) bool { return ev.Version >= final }) }()
		to := ipa.PhasePlanning
		for range writes { // would hang here if Publish waited for the slow ones
			require.NotNil(t, e.toggle(t, task.ID, &to))
		}
		// The fast subscriber has everything while the slow ones have read nothing.
		assert.Equal(t, span(1, final), versions(<-fastDone))

		got := until(t, slow, func(ev *ipa.Event) bool { return ev.Version >= final })
		assert.Equal(t, span(1, final), versions(got))
		gotGlobal := until(t, slowGlobal, func(ev *ipa.Event) bool { return ev.Version >= final })
		assert.Equal(t, positions(e.readAll(t)), positions(gotGlobal))
	})
}

// A bare notice — a commit without events, as another instance sends — makes
// a subscriber read the store and deliver what it missed; a notice for
// positions it has seen delivers nothing.
func TestBareNotice(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		task := e.create(t, "notice")
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		stream, err := e.feed.TaskEvents(ctx, task.ID, nil)
		require.NoError(t, err)
		global, err := e.feed.Events(ctx, nil, nil)
		require.NoError(t, err)
		head := task.Version

		res := e.appendQuietly(t, task.ID, 3) // versions 2..4, unpublished
		last := res.Events[len(res.Events)-1]
		e.broker.Publish(feed.Commit{TaskID: task.ID, Version: last.Version, Position: last.Position})
		for _, want := range res.Events {
			got := next(t, stream)
			assert.Equal(t, want.ID, got.ID)
			assert.Equal(t, want.Version, got.Version)
			got = next(t, global)
			assert.Equal(t, want.ID, got.ID)
			assert.Equal(t, want.Position, got.Position)
		}

		// Notices for what both have delivered: nothing. The next thing each
		// receives is the next commit.
		e.broker.Publish(feed.Commit{TaskID: task.ID, Version: head + 1, Position: res.Events[0].Position})
		e.broker.Publish(feed.Commit{TaskID: task.ID, Version: last.Version, Position: last.Position})
		to := nextPhase(res.Task.Phase)
		moved := e.toggle(t, task.ID, &to)
		require.NotNil(t, moved)
		assert.Equal(t, moved.Version, next(t, stream).Version)
		assert.Equal(t, last.Position+1, next(t, global).Position)

		// A notice for another task does not disturb a task stream.
		other := e.create(t, "other")
		e.broker.Publish(feed.Commit{TaskID: other.ID, Version: other.Version, Position: last.Position + 2})
		assert.Equal(t, last.Position+2, next(t, global).Position) // other's task_created, once
		e.toggle(t, task.ID, &to)
		assert.Equal(t, moved.Version+1, next(t, stream).Version)
		assert.Equal(t, last.Position+3, next(t, global).Position)
	})
}

// Every kind of subscription, idle, blocked on a send to a reader that never
// reads, or part-way through catching up, ends when its context ends: its
// channel closes and the broker forgets it.
func TestSubscriptionsEndWithContext(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		task := e.create(t, "ends")
		res := e.appendQuietly(t, task.ID, 1200) // two catch-up pages
		zero := int64(0)
		ctx, cancel := context.WithCancel(e.ctx)

		live, err := e.feed.TaskEvents(ctx, task.ID, nil)
		require.NoError(t, err)
		catchUp, err := e.feed.TaskEvents(ctx, task.ID, &zero)
		require.NoError(t, err)
		next(t, catchUp) // it is now blocked sending version 2
		global, err := e.feed.Events(ctx, &zero, nil)
		require.NoError(t, err)
		globalLive, err := e.feed.Events(ctx, nil, []string{ipa.EventTaskCompleted})
		require.NoError(t, err)
		changed, err := e.feed.TaskChanged(ctx, ipa.TaskFilter{})
		require.NoError(t, err)
		to := nextPhase(res.Task.Phase)
		e.toggle(t, task.ID, &to) // live and changed now block on a send
		requireSubscribers(t, e.broker, 5)

		cancel()
		requireClosed(t, live)
		requireClosed(t, catchUp)
		requireClosed(t, global)
		requireClosed(t, globalLive)
		requireClosed(t, changed)
		requireSubscribers(t, e.broker, 0)
	})
}

func ptr[T any](v T) *T { return &v }
