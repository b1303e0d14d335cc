package feed_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/feed"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// taskChanged sends only views passing the filter, and always the final view
// of a task that ends up passing it; a task that never passes is never sent.
func TestTaskChangedFilter(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		type sub struct {
			filter   ipa.TaskFilter
			sentinel string // title of the task whose view ends the reading
			got      []*ipa.Task
		}
		subs := map[string]*sub{
			"phase":  {filter: ipa.TaskFilter{Phases: []ipa.Phase{ipa.PhaseDevelopment}}, sentinel: "sentinel phase"},
			"status": {filter: ipa.TaskFilter{Statuses: []ipa.TaskStatus{ipa.StatusCancelled}}, sentinel: "sentinel status"},
			"title":  {filter: ipa.TaskFilter{TitleContains: ptr("NeEdLe")}, sentinel: "sentinel NEEDLE"},
		}
		var wg sync.WaitGroup
		for _, s := range subs {
			ch, err := e.feed.TaskChanged(ctx, s.filter)
			require.NoError(t, err)
			wg.Go(func() { s.got = until(t, ch, func(v *ipa.Task) bool { return v.Title == s.sentinel }) })
		}

		a := e.create(t, "plain a")
		n := e.create(t, "has a needle")
		never := e.create(t, "never matches") // stays in SPEC_CLARIFICATION, open, no needle
		to := ipa.PhasePlanning
		for range 4 { // PLANNING, DEVELOPMENT, PLANNING, DEVELOPMENT
			a = e.toggle(t, a.ID, &to)
		}
		c := e.create(t, "back to planning")
		to = ipa.PhasePlanning
		for range 3 { // PLANNING, DEVELOPMENT, PLANNING: passed the phase filter once
			c = e.toggle(t, c.ID, &to)
		}
		n, err := e.tasks.CancelTask(e.ctx, n.ID, "done with it", nil)
		require.NoError(t, err)
		sp := e.create(t, "sentinel phase")
		to = ipa.PhasePlanning
		e.toggle(t, sp.ID, &to)
		sp = e.toggle(t, sp.ID, &to)
		ss := e.create(t, "sentinel status")
		ss, err = e.tasks.CancelTask(e.ctx, ss.ID, "sentinel", nil)
		require.NoError(t, err)
		sn := e.create(t, "sentinel NEEDLE")
		wg.Wait()

		finals := []*ipa.Task{a, n, never, c, sp, ss, sn}
		for name, s := range subs {
			last := map[string]int64{}
			for _, v := range s.got {
				assert.Truef(t, s.filter.Matches(v), "%s: sent %q in %s/%s", name, v.Title, v.Status, v.Phase)
				assert.NotEqualf(t, never.ID, v.ID, "%s: sent a task that never matched", name)
				last[v.ID] = v.Version
			}
			for _, f := range finals { // every final view that passes was sent
				if s.filter.Matches(f) {
					assert.Equalf(t, f.Version, last[f.ID], "%s: final view of %q", name, f.Title)
				}
			}
		}
	})
}

// A subscriber that does not read gets, once it does, each changed task's
// latest view rather than every intermediate one; under concurrent writers
// (whose commits may be published out of order) no subscriber ever sees a
// task's version go backwards.
func TestTaskChangedCoalesces(t *testing.T) {
	t.Parallel()
	forEachBackendReordering(t, func(t *testing.T, e *env) {
		const perWriter, others = 30, 5
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		slow, err := e.feed.TaskChanged(ctx, ipa.TaskFilter{})
		require.NoError(t, err)
		fast, err := e.feed.TaskChanged(ctx, ipa.TaskFilter{})
		require.NoError(t, err)

		x := e.create(t, "busy")
		final := int64(1 + 2*perWriter)
		want := map[string]int64{x.ID: final}
		for i := range others {
			want[e.create(t, fmt.Sprintf("other %d", i)).ID] = 1
		}
		// done reports when every wanted task's final view was seen.
		done := func() func(*ipa.Task) bool {
			seen := map[string]int64{}
			return func(v *ipa.Task) bool {
				seen[v.ID] = v.Version
				for id, ver := range want {
					if seen[id] != ver {
						return false
					}
				}
				return true
			}
		}
		fastGot := make(chan []*ipa.Task)
		go func() { fastGot <- until(t, fast, done()) }()
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				to := ipa.PhasePlanning
				for range perWriter {
					if e.toggle(t, x.ID, &to) == nil {
						return
					}
				}
			})
		}
		wg.Wait()

		check := func(name string, got []*ipa.Task) (views int) {
			last := map[string]int64{}
			for _, v := range got {
				assert.Greaterf(t, v.Version, last[v.ID], "%s: %s went from version %d to %d", name, v.ID, last[v.ID], v.Version)
				last[v.ID] = v.Version
				if v.ID == x.ID {
					views++
				}
			}
			return views
		}
		check("fast", <-fastGot)
		views := check("slow", until(t, slow, done()))
		assert.LessOrEqualf(t, views, 3, "the slow subscriber got %d views of a task written %d times", views, final)
	})
}

// A taskChanged subscriber owing more than 10,000 tasks is closed rather than
// buffering without limit, and leaves the broker.
func TestTaskChangedTooFarBehind(t *testing.T) {
	t.Parallel()
	b := feed.NewBroker()
	f := feed.NewFeed(nil, b, nil) // commits carry their task: the store is never read
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := f.TaskChanged(ctx, ipa.TaskFilter{})
	require.NoError(t, err)
	// The batch being sent does not count as owed, and it holds at most
	// 10,000 tasks; past twice that, the mailbox must overflow.
	const published = 2*10_000 + 2
	for i := range published {
		task := &ipa.Task{ID: uuid.NewString(), Version: 1}
		b.Publish(feed.Commit{TaskID: task.ID, Version: 1, Position: int64(i + 1), Task: task})
	}
	received := 0
	for range ch {
		received++
	}
	assert.Less(t, received, published)
	requireSubscribers(t, b, 0)
}

// A change whose notice never reached this process (another instance's
// commit while the LISTEN connection was down) is delivered once the
// listener reconnects and calls Resync: the subscriber reads the store.
//
// SQLite only: on PostgreSQL this process's own LISTEN connection may hear
// the store's notice (or resync when it connects), which is exactly what
// the test has to rule out; TestSeveralInstances covers PostgreSQL with
// real servers whose listeners are cut.
func TestTaskChangedResync(t *testing.T) {
	t.Parallel()
	func(t *testing.T, e *env) {
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		ch, err := e.feed.TaskChanged(ctx, ipa.TaskFilter{})
		require.NoError(t, err)
		// Written straight to the store: no commit is published here.
		id := uuid.Must(uuid.NewV7()).String()
		_, err = e.store.CreateTask(ctx, ipa.CreateTaskRequest{TaskID: id, Actor: "t", Created: ipa.TaskCreatedData{Title: "missed notice", Runtime: "demo"}})
		require.NoError(t, err)
		select {
		case v := <-ch:
			t.Fatalf("heard of %q without a commit or a resync: the test proves nothing", v.Title)
		case <-time.After(100 * time.Millisecond):
		}
		e.broker.Resync()
		select {
		case v := <-ch:
			require.Equal(t, id, v.ID)
			require.Equal(t, "missed notice", v.Title)
		case <-time.After(hang):
			t.Fatal("the resync did not deliver the missed change")
		}
		// Nothing twice.
		e.broker.Resync()
		select {
		case v := <-ch:
			t.Fatalf("delivered %q again after a second resync", v.Title)
		case <-time.After(100 * time.Millisecond):
		}
	}(t, setup(t, "sqlite", false))
}
