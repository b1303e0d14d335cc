package cohort

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/stretchr/testify/require"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Shared executions (cohort.go) against fake subscriptions: each one is an
// operation going through the interceptor whose resolver taps its own feed
// (a channel the test fills), and whose gqlgen handler is a counting fake.

// subscription is one fake subscription through the interceptor.
type subscription struct {
	h     graphql.ResponseHandler
	feed  chan *ipa.Event
	execs *atomic.Int64 // how often its own handler executed a value
}

// subscribe runs one subscription operation as role through hub. failOn
// names an event whose execution answers an error (a member's own).
func subscribe(ctx context.Context, hub *Cohorts, role ipa.Role, failOn string) *subscription {
	return subscribeWith(ctx, hub, role, failOn, nil)
}

// subscribeWith is subscribe whose handler calls during (when not nil)
// inside each execution, before it answers.
func subscribeWith(ctx context.Context, hub *Cohorts, role ipa.Role, failOn string, during func()) *subscription {
	s := &subscription{feed: make(chan *ipa.Event, 1024), execs: new(atomic.Int64)}
	ctx = ipa.WithActor(ctx, ipa.Actor{ID: "someone", Role: role})
	ctx = graphql.WithOperationContext(ctx, &graphql.OperationContext{
		RawQuery:  "subscription { events { id } }",
		Variables: map[string]any{"after": "0"},
		Operation: &ast.OperationDefinition{Operation: ast.Subscription},
	})
	next := func(ctx context.Context) graphql.ResponseHandler {
		ch, _ := Tap(ctx, (<-chan *ipa.Event)(s.feed), nil) // the resolver
		return func(ctx context.Context) *graphql.Response {
			select {
			case ev, ok := <-ch:
				if !ok {
					return nil
				}
				if during != nil {
					during()
				}
				s.execs.Add(1)
				if ev.ID == failOn {
					// Partial data with an error: both are this member's own.
					return &graphql.Response{Data: []byte(`{"id":null}`), Errors: gqlerror.List{{Message: "yours only"}}}
				}
				data, _ := json.Marshal(map[string]string{"id": ev.ID})
				return &graphql.Response{Data: data}
			case <-ctx.Done():
				return nil
			}
		}
	}
	s.h = hub.InterceptOperation(ctx, next)
	return s
}

func events(n int) []*ipa.Event {
	out := make([]*ipa.Event, n)
	for i := range out {
		out[i] = &ipa.Event{ID: fmt.Sprintf("ev%d", i+1), Position: int64(i + 1)}
	}
	return out
}

func (s *subscription) push(evs []*ipa.Event) {
	for _, ev := range evs {
		s.feed <- ev
	}
}

// pull takes n responses from the subscription's handler.
func (s *subscription) pull(ctx context.Context, n int) []string {
	out := make([]string, 0, n)
	for range n {
		r := s.h(ctx)
		if r == nil {
			return out
		}
		if len(r.Errors) > 0 {
			out = append(out, "error")
			continue
		}
		out = append(out, string(r.Data))
	}
	return out
}

func want(evs []*ipa.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = `{"id":"` + ev.ID + `"}`
	}
	return out
}

// Identical subscriptions execute each value once: the second member is
// answered with the first one's data, its own handler never runs.
func TestSharedExecutionAnswersFromTheFirstMember(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hub := New()
	a := subscribe(ctx, hub, ipa.RoleViewer, "")
	b := subscribe(ctx, hub, ipa.RoleViewer, "")
	require.Equal(t, 1, hub.Count())
	require.Equal(t, 2, hub.Members())

	evs := events(10)
	a.push(evs)
	b.push(evs)
	require.Equal(t, want(evs), a.pull(ctx, 10))
	require.Equal(t, want(evs), b.pull(ctx, 10))
	require.EqualValues(t, 10, a.execs.Load())
	require.Zero(t, b.execs.Load(), "b was answered from a's executions")
	executed, shared := hub.Stats()
	require.EqualValues(t, 10, executed)
	require.EqualValues(t, 10, shared)
}

// The caller's role is part of what a subscription is: another role is
// another cohort, which executes for itself.
func TestSharedExecutionSeparatesRoles(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hub := New()
	a := subscribe(ctx, hub, ipa.RoleViewer, "")
	b := subscribe(ctx, hub, ipa.RoleAdmin, "")
	require.Equal(t, 2, hub.Count())

	evs := events(3)
	a.push(evs)
	b.push(evs)
	require.Equal(t, want(evs), a.pull(ctx, 3))
	require.Equal(t, want(evs), b.pull(ctx, 3))
	require.EqualValues(t, 3, a.execs.Load())
	require.EqualValues(t, 3, b.execs.Load())
}

// A response with errors is the member's own: a member that gets the same
// value executes it itself.
func TestSharedExecutionDoesNotShareErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hub := New()
	a := subscribe(ctx, hub, ipa.RoleViewer, "ev2")
	b := subscribe(ctx, hub, ipa.RoleViewer, "")
	evs := events(3)
	a.push(evs)
	b.push(evs)
	require.Equal(t, []string{want(evs)[0], "error", want(evs)[2]}, a.pull(ctx, 3))
	require.Equal(t, want(evs), b.pull(ctx, 3), "b executed ev2 itself")
	require.EqualValues(t, 1, b.execs.Load())
}

// A member that falls further behind than the cohort remembers executes
// what it reads itself: correct, only not shared.
func TestSharedExecutionFarBehindExecutesItself(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hub := New()
	a := subscribe(ctx, hub, ipa.RoleViewer, "")
	b := subscribe(ctx, hub, ipa.RoleViewer, "")
	n := recentEvents + 10
	evs := events(n)
	a.push(evs)
	b.push(evs)
	require.Equal(t, want(evs), a.pull(ctx, n))
	require.Equal(t, want(evs), b.pull(ctx, n))
	// The oldest ten were forgotten, so b executes at least those; its own
	// executions then push out what a executed after them.
	require.GreaterOrEqual(t, b.execs.Load(), int64(10))
}

// Members reading at once, at different speeds: each gets every value in
// order, and every value was either executed or shared for each member.
func TestSharedExecutionConcurrentMembers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hub := New()
	const members, n = 4, 300
	subs := make([]*subscription, members)
	evs := events(n)
	for i := range subs {
		subs[i] = subscribe(ctx, hub, ipa.RoleViewer, "")
		subs[i].push(evs)
	}
	got := make([][]string, members)
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = s.pull(ctx, n)
		}()
	}
	wg.Wait()
	for i := range subs {
		require.Equal(t, want(evs), got[i], "member %d", i)
	}
	executed, shared := hub.Stats()
	require.EqualValues(t, members*n, executed+shared)
	var execs int64
	for _, s := range subs {
		execs += s.execs.Load()
	}
	require.EqualValues(t, executed, execs)
}

// A member waiting for another's execution stops waiting when its own
// operation ends; the end of a member's operation, or of its feed, takes it
// out of the cohort, and the last one out removes the cohort.
func TestSharedExecutionCancellationAndLeaving(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hub := New()
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	bctx, bcancel := context.WithCancel(ctx)
	defer bcancel()

	// held's handler stays inside its execution of ev1 until released.
	release, entered := make(chan struct{}), make(chan struct{})
	held := subscribeWith(hctx, hub, ipa.RoleViewer, "", func() {
		close(entered)
		<-release
	})
	b := subscribe(bctx, hub, ipa.RoleViewer, "")
	a := subscribe(ctx, hub, ipa.RoleViewer, "")
	require.Equal(t, 3, hub.Members())

	evs := events(1)
	held.push(evs)
	b.push(evs)
	done := make(chan []string, 1)
	go func() { done <- held.pull(hctx, 1) }()
	<-entered // held claimed ev1 and is executing it
	bdone := make(chan *graphql.Response, 1)
	go func() { bdone <- b.h(bctx) }()
	bcancel() // b's operation ends while it may wait for held's execution
	select {
	case r := <-bdone:
		require.Nil(t, r)
	case <-time.After(waitFor):
		t.Fatal("a member waiting for another's execution did not stop with its operation")
	}
	close(release)
	require.Equal(t, want(evs), <-done)
	require.Eventually(t, func() bool { return hub.Members() == 2 }, waitFor, time.Millisecond, "b did not leave")

	close(a.feed) // a's feed ends: gqlgen sees the end of its stream
	require.Nil(t, a.h(ctx))
	require.Equal(t, 1, hub.Members(), "a did not leave")
	hcancel()
	require.Eventually(t, func() bool { return hub.Count() == 0 && hub.Members() == 0 }, waitFor, time.Millisecond,
		"the last member out leaves no cohort behind")
}

// identity tells values apart as members must: an event by id, a task view
// by id and version, a batch by its first event and length.
func TestIdentity(t *testing.T) {
	id := func(v any) string {
		s, ok := identity(v)
		if !ok {
			return "-"
		}
		return s
	}
	require.Equal(t, "eE1", id(&ipa.Event{ID: "E1"}))
	require.Equal(t, "tT1@3", id(&ipa.Task{ID: "T1", Version: 3}))
	require.NotEqual(t, id(&ipa.Task{ID: "T1", Version: 3}), id(&ipa.Task{ID: "T1", Version: 4}))
	require.Equal(t, "bE1+2", id([]*ipa.Event{{ID: "E1"}, {ID: "E2"}}))
	require.NotEqual(t, id([]*ipa.Event{{ID: "E1"}}), id([]*ipa.Event{{ID: "E1"}, {ID: "E2"}}))
	for _, v := range []any{(*ipa.Event)(nil), (*ipa.Task)(nil), []*ipa.Event{}, []*ipa.Event{nil}, "other"} {
		require.Equal(t, "-", id(v), "%#v is not shareable", v)
	}
}
