package store

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// hold blocks s's writer loop inside a batch until the returned release is
// called, so the writes submitted meanwhile queue up and run as one batch.
func hold(t *testing.T, s *Store, taskID string) (release func()) {
	t.Helper()
	entered, gate := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := s.Append(context.Background(), ipa.AppendRequest{TaskID: taskID, ExpectedVersion: ipa.AnyVersion, Now: t0,
			Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
				close(entered)
				<-gate
				return nil, nil
			}})
		done <- err
	}()
	<-entered
	return func() {
		close(gate)
		require.NoError(t, <-done)
	}
}

// queued waits until n requests wait in s's writer queue.
func queued(t *testing.T, s *Store, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		s.w.mu.Lock()
		defer s.w.mu.Unlock()
		return len(s.w.queue) == n
	}, 10*time.Second, time.Millisecond)
}

type outcome struct {
	name   string
	events []ipa.Event
	err    error
}

// TestBatchMixedOutcomes runs, in one batch transaction, appends that
// succeed, fail in Decide, conflict, miss their task or panic, and creates
// that succeed, reuse a task id or share an idempotency key: exactly the
// successful ones are written, with dense positions, gap-free versions and
// one commit notice each.
func TestBatchMixedOutcomes(t *testing.T) {
	t.Parallel()
	for _, d := range dialects() {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := d.open(t)
			ctx := context.Background()
			blocker := createTask(t, s, "blocker", t0)
			a := createTask(t, s, "a", t0)
			b := createTask(t, s, "b", t0)
			c := createTask(t, s, "c", t0)
			dup := createTask(t, s, "dup", t0)
			before := map[string]*ipa.Task{}
			for _, task := range []*ipa.Task{a, b, c, dup} {
				before[task.ID], _, _ = snapshot(t, s, task.ID)
			}
			head, err := s.HeadPosition(ctx)
			require.NoError(t, err)

			var sizes []int
			var smu sync.Mutex
			s.onBatch = func(n int) { smu.Lock(); sizes = append(sizes, n); smu.Unlock() }
			release := hold(t, s, blocker.ID)

			boom := errors.New("boom")
			emit := func(types ...string) ipa.DecideFunc {
				return func(*ipa.Task) ([]ipa.NewEvent, error) {
					out := make([]ipa.NewEvent, len(types))
					for i, ty := range types {
						out[i] = ipa.NewEvent{Type: ty}
					}
					return out, nil
				}
			}
			appendReq := func(id string, expected int64, decide ipa.DecideFunc) func() ([]ipa.Event, error) {
				return func() ([]ipa.Event, error) {
					res, err := s.Append(ctx, ipa.AppendRequest{TaskID: id, ExpectedVersion: expected, Now: t0.Add(time.Hour), Actor: "bob", Decide: decide})
					return res.Events, err
				}
			}
			createReq := func(id, key string) func() ([]ipa.Event, error) {
				return func() ([]ipa.Event, error) {
					res, err := s.CreateTask(ctx, ipa.CreateTaskRequest{TaskID: id, Actor: "alice", IdempotencyKey: key, Now: t0,
						Created: ipa.TaskCreatedData{Title: "new", Runtime: "demo"}})
					if err == nil && res.Existing {
						err = errExisting
					}
					return res.Events, err
				}
			}
			newID1, newID2, newID3 := uuid.NewString(), uuid.NewString(), uuid.NewString()
			// Submitted one at a time, in this order, so the batch runs them
			// in this order.
			reqs := []struct {
				name string
				fn   func() ([]ipa.Event, error)
			}{
				{"a ok", appendReq(a.ID, 1, emit(ipa.EventPodStarted))},
				{"b decide error", appendReq(b.ID, ipa.AnyVersion, func(*ipa.Task) ([]ipa.NewEvent, error) { return nil, boom })},
				{"a stale", appendReq(a.ID, 1, emit(ipa.EventPodStopped))},
				{"a ok again", appendReq(a.ID, 2, emit(ipa.EventPodOutput, ipa.EventPodStopped))},
				{"missing", appendReq(uuid.NewString(), ipa.AnyVersion, emit(ipa.EventPodStarted))},
				{"create", createReq(newID1, "")},
				{"create dup id", createReq(dup.ID, "")},
				{"c ok", appendReq(c.ID, ipa.AnyVersion, emit(ipa.EventPodStarted))},
				{"create key", createReq(newID2, "k")},
				{"create key again", createReq(newID3, "k")},
				{"b no events", appendReq(b.ID, 1, emit())},
				{"c wrong expected", appendReq(c.ID, 1, emit(ipa.EventPodStopped))},
			}
			out := make([]outcome, len(reqs))
			var wg sync.WaitGroup
			for i, r := range reqs {
				wg.Go(func() {
					evs, err := r.fn()
					out[i] = outcome{r.name, evs, err}
				})
				queued(t, s, i+1)
			}
			var panicked any
			wg.Go(func() {
				defer func() { panicked = recover() }()
				_, _ = appendReq(b.ID, ipa.AnyVersion, func(*ipa.Task) ([]ipa.NewEvent, error) { panic("decide panicked") })()
			})
			queued(t, s, len(reqs)+1)
			release()
			wg.Wait()
			assert.Equal(t, "decide panicked", panicked)
			smu.Lock()
			assert.Equal(t, []int{1, len(reqs) + 1}, sizes, "one batch for the blocker, one for the rest")
			smu.Unlock()

			byName := map[string]outcome{}
			for _, o := range out {
				byName[o.name] = o
			}
			for _, name := range []string{"a ok", "a ok again", "create", "c ok", "create key", "b no events"} {
				assert.NoError(t, byName[name].err, name)
			}
			assert.Same(t, boom, byName["b decide error"].err)
			requireCode(t, byName["a stale"].err, ipa.ECONFLICT, ipa.ReasonVersionConflict)
			requireCode(t, byName["c wrong expected"].err, ipa.ECONFLICT, ipa.ReasonVersionConflict)
			requireCode(t, byName["missing"].err, ipa.ENOTFOUND, ipa.ReasonTaskNotFound)
			require.Error(t, byName["create dup id"].err)
			assert.NotEqual(t, ipa.EUNAVAILABLE, ipa.ErrorCode(byName["create dup id"].err))
			assert.ErrorIs(t, byName["create key again"].err, errExisting)
			assert.Empty(t, byName["b no events"].events)

			// The written events are exactly the successful requests', in
			// request order, at the positions right after the old head.
			var want []ipa.Event
			for _, o := range out {
				want = append(want, o.events...)
			}
			require.Len(t, want, 6)
			got, err := s.ReadEvents(ctx, ipa.EventQuery{After: head, Limit: 100})
			require.NoError(t, err)
			require.Len(t, got, len(want))
			for i := range want {
				assert.Equal(t, head+int64(i)+1, want[i].Position, "dense positions")
				assert.Equal(t, want[i].ID, got[i].ID)
				assert.Equal(t, want[i].Position, got[i].Position)
			}
			newHead, err := s.HeadPosition(ctx)
			require.NoError(t, err)
			assert.Equal(t, head+int64(len(want)), newHead)

			// Versions without gaps; failed writes left their tasks alone.
			ta, n, _ := snapshot(t, s, a.ID)
			assert.Equal(t, int64(4), ta.Version)
			assert.Equal(t, int64(4), n)
			for _, task := range []*ipa.Task{b, dup} {
				after, n, _ := snapshot(t, s, task.ID)
				assertSameTask(t, before[task.ID], after)
				assert.Equal(t, int64(1), n)
			}
			tc, _, _ := snapshot(t, s, c.ID)
			assert.Equal(t, int64(2), tc.Version)
			_, err = s.GetTask(ctx, newID1)
			require.NoError(t, err)
			_, err = s.GetTask(ctx, newID2)
			require.NoError(t, err)
			_, err = s.GetTask(ctx, newID3)
			requireCode(t, err, ipa.ENOTFOUND, ipa.ReasonTaskNotFound)
		})
	}
}

// TestBatchFallsBackAlone: when the batch transaction as a whole fails (here
// an event PostgreSQL cannot store, found only when the batch's events are
// inserted), each request runs again on its own and only the culprit fails.
func TestBatchFallsBackAlone(t *testing.T) {
	t.Parallel()
	s := dialects()[1].open(t)
	ctx := context.Background()
	blocker := createTask(t, s, "blocker", t0)
	tasks := make([]*ipa.Task, 6)
	for i := range tasks {
		tasks[i] = createTask(t, s, "t", t0)
	}
	var sizes []int
	s.onBatch = func(n int) { sizes = append(sizes, n) }
	release := hold(t, s, blocker.ID)
	errs := make([]error, len(tasks))
	var wg sync.WaitGroup
	for i, task := range tasks {
		typ := ipa.EventPodOutput
		if i == 3 {
			typ = "runtime.bad\x00type" // text columns refuse NUL
		}
		wg.Go(func() {
			_, errs[i] = s.Append(ctx, ipa.AppendRequest{TaskID: task.ID, ExpectedVersion: ipa.AnyVersion, Now: t0,
				Decide: func(*ipa.Task) ([]ipa.NewEvent, error) { return []ipa.NewEvent{{Type: typ}}, nil }})
		})
		queued(t, s, i+1)
	}
	release()
	wg.Wait()
	assert.Equal(t, []int{1, len(tasks)}, sizes)
	head, err := s.HeadPosition(ctx)
	require.NoError(t, err)
	all, err := s.ReadEvents(ctx, ipa.EventQuery{Limit: 1000})
	require.NoError(t, err)
	for i, task := range tasks {
		got, n, _ := snapshot(t, s, task.ID)
		if i == 3 {
			require.Error(t, errs[i])
			assert.Equal(t, int64(1), got.Version)
			assert.Equal(t, int64(1), n)
			continue
		}
		require.NoError(t, errs[i], i)
		assert.Equal(t, int64(2), got.Version)
		assert.Equal(t, int64(2), n)
	}
	require.Len(t, all, int(head), "positions dense")
	for i, e := range all {
		assert.Equal(t, int64(i+1), e.Position)
	}
}

// TestBatchDeadlockRetried: two instances' batches lock two tasks in
// opposite orders; PostgreSQL aborts one with a deadlock, whose requests then
// run again on their own, and every append commits once.
func TestBatchDeadlockRetried(t *testing.T) {
	t.Parallel()
	s1 := dialects()[1].open(t)
	s2 := mustOpen(t, s1.url)
	ctx := context.Background()
	a, b := createTask(t, s1, "a", t0), createTask(t, s1, "b", t0)
	blocker1, blocker2 := createTask(t, s1, "x", t0), createTask(t, s1, "y", t0)
	// Both batches' first requests hold their row lock until the other's
	// has too, so their second requests wait on each other.
	var both sync.WaitGroup
	both.Add(2)
	decide := func(first bool) ipa.DecideFunc {
		var once sync.Once
		return func(*ipa.Task) ([]ipa.NewEvent, error) {
			if first {
				once.Do(both.Done)
				both.Wait()
			}
			return []ipa.NewEvent{{Type: ipa.EventPodOutput}}, nil
		}
	}
	release1, release2 := hold(t, s1, blocker1.ID), hold(t, s2, blocker2.ID)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i, w := range []struct {
		s     *Store
		id    string
		first bool
	}{{s1, a.ID, true}, {s1, b.ID, false}, {s2, b.ID, true}, {s2, a.ID, false}} {
		wg.Go(func() {
			_, errs[i] = w.s.Append(ctx, ipa.AppendRequest{TaskID: w.id, ExpectedVersion: ipa.AnyVersion, Now: t0, Decide: decide(w.first)})
		})
		queued(t, w.s, i%2+1)
	}
	release1()
	release2()
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, i)
	}
	for _, id := range []string{a.ID, b.ID} {
		task, n, _ := snapshot(t, s1, id)
		assert.Equal(t, int64(3), task.Version)
		assert.Equal(t, int64(3), n)
	}
	all, err := s1.ReadEvents(ctx, ipa.EventQuery{Limit: 100})
	require.NoError(t, err)
	for i, e := range all {
		assert.Equal(t, int64(i+1), e.Position)
	}
}

// TestBatchWithdrawQueued: a write whose context ends while it is still
// queued returns ctx.Err() and writes nothing.
func TestBatchWithdrawQueued(t *testing.T) {
	t.Parallel()
	for _, d := range dialects() {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := d.open(t)
			blocker := createTask(t, s, "blocker", t0)
			task := createTask(t, s, "t", t0)
			release := hold(t, s, blocker.ID)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				_, err := s.Append(ctx, ipa.AppendRequest{TaskID: task.ID, ExpectedVersion: ipa.AnyVersion, Now: t0,
					Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
						return []ipa.NewEvent{{Type: ipa.EventPodStarted}}, nil
					}})
				errc <- err
			}()
			queued(t, s, 1)
			cancel()
			assert.ErrorIs(t, <-errc, context.Canceled)
			release()
			_, err := s.Append(context.Background(), ipa.AppendRequest{TaskID: task.ID, ExpectedVersion: 1, Now: t0,
				Decide: func(*ipa.Task) ([]ipa.NewEvent, error) { return nil, nil }})
			require.NoError(t, err, "the withdrawn write wrote nothing")
		})
	}
}

// TestCloseWithWritesInFlight closes a store under concurrent creates: Close
// returns, every create that succeeded is committed at the position it
// returned, every one that failed (EUNAVAILABLE) wrote nothing.
func TestCloseWithWritesInFlight(t *testing.T) {
	t.Parallel()
	for _, backend := range dbtest.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			url := dbtest.URL(t, backend)
			s := mustOpen(t, url)
			type result struct {
				id  string
				pos int64
				err error
			}
			var mu sync.Mutex
			var results []result
			var wg sync.WaitGroup
			var started sync.WaitGroup
			for range 16 {
				started.Add(1)
				wg.Go(func() {
					first := true
					for {
						req := createReq()
						res, err := s.CreateTask(context.Background(), req)
						r := result{id: req.TaskID, err: err}
						if err == nil {
							r.pos = res.Events[0].Position
						}
						mu.Lock()
						results = append(results, r)
						mu.Unlock()
						if first {
							started.Done()
							first = false
						}
						if err != nil {
							return
						}
					}
				})
			}
			started.Wait()
			time.Sleep(20 * time.Millisecond)
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			select {
			case <-closed:
			case <-time.After(30 * time.Second):
				t.Fatal("Close hangs")
			}
			wg.Wait()

			again := mustOpen(t, url)
			ctx := context.Background()
			var ok, failed int
			var positions []int64
			for _, r := range results {
				task, err := again.GetTask(ctx, r.id)
				if r.err != nil {
					failed++
					requireCode(t, r.err, ipa.EUNAVAILABLE, ipa.ReasonStoreUnavailable)
					requireCode(t, err, ipa.ENOTFOUND, ipa.ReasonTaskNotFound)
					continue
				}
				ok++
				require.NoError(t, err, "a create that succeeded is committed")
				assert.Equal(t, r.id, task.ID)
				evs, err := again.ReadEvents(ctx, ipa.EventQuery{TaskID: r.id, Limit: 10})
				require.NoError(t, err)
				require.Len(t, evs, 1)
				assert.Equal(t, r.pos, evs[0].Position)
				positions = append(positions, r.pos)
			}
			assert.Equal(t, 16, failed, "each writer stops at its first failure")
			assert.Positive(t, ok)
			sort.Slice(positions, func(i, j int) bool { return positions[i] < positions[j] })
			head, err := again.HeadPosition(ctx)
			require.NoError(t, err)
			assert.Equal(t, int64(len(positions)), head)
			for i, p := range positions {
				assert.Equal(t, int64(i+1), p, "dense positions")
			}
			t.Logf("%d creates committed before Close", ok)
		})
	}
}
