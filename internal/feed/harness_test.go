package feed_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app"
	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/feed"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/service"
	"github.com/ipa-dev/ipa/internal/store"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// hang is how long a test waits for something that must happen before it
// calls it a hang. It is a deadlock detector, never a timing assertion.
const hang = 30 * time.Second

// forEachBackend runs fn as a parallel subtest per backend on a fresh stack.
func forEachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	for _, b := range dbtest.Backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			fn(t, setup(t, b, false))
		})
	}
}

// forEachBackendReordering is forEachBackend with the event log publishing
// each commit after a random delay of up to 2ms, so concurrent writers'
// commits often reach subscribers out of commit order — as they may when the
// goroutine that committed is descheduled before it publishes.
func forEachBackendReordering(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	for _, b := range dbtest.Backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			fn(t, setup(t, b, true))
		})
	}
}

// delayedPublisher publishes each commit after a random delay.
type delayedPublisher struct {
	next eventlog.Publisher
	wg   sync.WaitGroup
}

func (p *delayedPublisher) Publish(c feed.Commit) {
	p.wg.Go(func() {
		time.Sleep(rand.N(2 * time.Millisecond))
		p.next.Publish(c)
	})
}

// env is a server assembled by package app as ipa serve is: a store, a
// broker, a feed over them, and the task service writing to the broker.
type env struct {
	store  *store.Store
	broker *feed.Broker
	feed   *feed.Feed
	tasks  *service.TaskService
	ctx    context.Context // an admin's context, cancelled when the test ends
}

// setup builds the stack on a fresh database of backend. When the test ends
// its context is cancelled and every subscription must have gone.
func setup(t *testing.T, backend string, reorder bool) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(ipa.WithActor(context.Background(), ipa.Actor{ID: "t", Role: ipa.RoleAdmin}))
	var delayed *delayedPublisher
	a := apptest.New(t, dbtest.URL(t, backend), auth.ModeAuto, func(c *app.Config) {
		if reorder {
			c.Publish = func(next eventlog.Publisher) eventlog.Publisher {
				delayed = &delayedPublisher{next: next}
				return delayed
			}
		}
	})
	if delayed != nil {
		t.Cleanup(delayed.wg.Wait)
	}
	// Cleanups run last-registered first: cancel, then check, then close.
	t.Cleanup(func() { requireSubscribers(t, a.Broker, 0) })
	t.Cleanup(cancel)
	return &env{store: a.Store, broker: a.Broker, feed: a.Feed, tasks: a.Services.TaskService, ctx: ctx}
}

// create creates a task with title through the task service.
func (e *env) create(t testing.TB, title string) *ipa.Task {
	t.Helper()
	task, err := e.tasks.CreateTask(e.ctx, ipa.CreateTaskInput{Title: title})
	require.NoError(t, err)
	return task
}

// toggle moves the task one phase through the task service, as a person would
// with transitionPhase: from SPEC_CLARIFICATION to PLANNING, then back and
// forth between PLANNING and DEVELOPMENT. *to is the phase to try first and is
// left pointing at the next move. When another writer moved the task in
// between, it reads where the task is and tries again; losing many races in a
// row is normal for one of several writers on one task. Safe to call from any
// goroutine: failures are reported with t.Errorf and return nil.
func (e *env) toggle(t testing.TB, id string, to *ipa.Phase) *ipa.Task {
	for range 10_000 {
		task, err := e.tasks.TransitionPhase(e.ctx, id, *to, nil, nil)
		if err == nil {
			*to = nextPhase(task.Phase)
			return task
		}
		switch ipa.ErrorReason(err) {
		case ipa.ReasonInvalidTransition, ipa.ReasonVersionConflict: // someone else moved it first
			cur, err := e.store.GetTask(e.ctx, id)
			if err != nil {
				t.Errorf("get task %s: %v", id, err)
				return nil
			}
			*to = nextPhase(cur.Phase)
			continue
		}
		t.Errorf("transitionPhase %s: %v", id, err)
		return nil
	}
	t.Errorf("transitionPhase %s: kept losing races", id)
	return nil
}

// nextPhase is where toggle moves a task from p.
func nextPhase(p ipa.Phase) ipa.Phase {
	if p == ipa.PhasePlanning {
		return ipa.PhaseDevelopment
	}
	return ipa.PhasePlanning
}

func flip(p *ipa.Phase) { *p = nextPhase(*p) }

// appendQuietly appends n phase changes to the task straight through the
// store, in one transaction, and publishes nothing — as another instance's
// write looks to this one. Returns the append's result.
func (e *env) appendQuietly(t testing.TB, id string, n int) ipa.AppendResult {
	t.Helper()
	res, err := e.store.Append(e.ctx, ipa.AppendRequest{
		TaskID:          id,
		ExpectedVersion: ipa.AnyVersion,
		Actor:           "t",
		Now:             time.Now(),
		Decide:          func(cur *ipa.Task) ([]ipa.NewEvent, error) { return phaseChanges(cur.Phase, n), nil },
	})
	require.NoError(t, err)
	return res
}

// phaseChanges returns n phase_changed events going back and forth from.
func phaseChanges(from ipa.Phase, n int) []ipa.NewEvent {
	out := make([]ipa.NewEvent, n)
	for i := range out {
		to := from
		flip(&to)
		out[i] = ipa.NewEvent{Type: ipa.EventPhaseChanged, Data: ipa.PhaseChangedData{From: from, To: to}}
		from = to
	}
	return out
}

// next receives one event, failing on a closed channel or a hang.
func next[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		require.True(t, ok, "subscription closed early")
		return v
	case <-time.After(hang):
		t.Fatalf("no value within %s", hang)
	}
	panic("unreachable")
}

// until receives from ch until done says the last value was the final one.
// Safe to call from any goroutine: a closed channel or a hang is reported
// with t.Errorf and ends the collection.
func until[T any](t testing.TB, ch <-chan T, done func(T) bool) []T {
	var out []T
	timer := time.NewTimer(hang)
	defer timer.Stop()
	for {
		select {
		case v, ok := <-ch:
			if !ok {
				t.Errorf("subscription closed after %d values", len(out))
				return out
			}
			out = append(out, v)
			if done(v) {
				return out
			}
		case <-timer.C:
			t.Errorf("hang: %d values, then nothing for %s", len(out), hang)
			return out
		}
	}
}

// requireClosed drains ch until it closes, failing on a hang.
func requireClosed[T any](t testing.TB, ch <-chan T) {
	t.Helper()
	timer := time.NewTimer(hang)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timer.C:
			t.Fatalf("subscription still open %s after its context ended", hang)
		}
	}
}

// requireSubscribers polls until the broker has want subscribers.
func requireSubscribers(t testing.TB, b *feed.Broker, want int) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for b.Subscribers() != want {
		if time.Now().After(deadline) {
			t.Fatalf("broker has %d subscribers, want %d", b.Subscribers(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readAll returns the whole log in position order, in pages of 1000.
func (e *env) readAll(t testing.TB) []ipa.Event {
	t.Helper()
	var all []ipa.Event
	for {
		var after int64
		if len(all) > 0 {
			after = all[len(all)-1].Position
		}
		page, err := e.store.ReadEvents(e.ctx, ipa.EventQuery{After: after, Limit: 1000})
		require.NoError(t, err)
		all = append(all, page...)
		if len(page) < 1000 {
			return all
		}
	}
}

func versions(evs []*ipa.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Version
	}
	return out
}

func positions[E ipa.Event | *ipa.Event](evs []E) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		switch e := any(e).(type) {
		case ipa.Event:
			out[i] = e.Position
		case *ipa.Event:
			out[i] = e.Position
		}
	}
	return out
}

// span returns from, from+1, …, to.
func span(from, to int64) []int64 {
	var out []int64
	for v := from; v <= to; v++ {
		out = append(out, v)
	}
	return out
}

// createdTitle is the title in a task_created event's data, "" for others.
func createdTitle(t testing.TB, e *ipa.Event) string {
	if e.Type != ipa.EventTaskCreated {
		return ""
	}
	var d ipa.TaskCreatedData
	assert.NoError(t, json.Unmarshal(e.Data, &d))
	return d.Title
}
