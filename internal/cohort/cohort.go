// Package cohort makes identical subscriptions share their execution: the
// selection set of an event is executed and encoded once per cohort, and
// the same encoded data is sent to every member.
//
// A cohort is the set of live subscriptions with the same document,
// operation name, variables and role (the only part of the caller that
// changes what a feed resolves). It comes in two kinds:
//
//   - Live cohorts (live.go), for the cursor feeds taskEvents and events
//     (TapSource): the cohort reads one feed for all its members and writes
//     each value's response to every member itself, through a Sink — the
//     WebSocket transport's send queue (package wstransport), or a small buffer
//     that an SSE stream reads. A member costs no goroutine while it keeps
//     up, and keeps its own cursor, so order, no gap and no duplicate hold
//     per member.
//   - Shared executions (this file), for every other tapped feed
//     (taskChanged, the batched streams: Tap): each member keeps its own
//     feed — its own catch-up, slow-reader handling and credential checks —
//     and only the execution is shared, as described below.
//
// How shared executions sit inside gqlgen without changing its API: Cohorts
// is an operation interceptor. Before the operation runs it puts a tap in
// the context; the subscription resolver passes its channel through Tap,
// which hands gqlgen a one-slot channel instead and keeps the feed's
// channel for the interceptor. For every message the interceptor takes the
// next value from the feed itself, and looks the value's identity (event
// id; task id and version; first event and length of a batch) up in the
// cohort:
//   - first member to get it: it puts the value in the slot, lets gqlgen
//     execute it as usual (or the resolver's encoder write it: TapEncoded),
//     and records the encoded data in the cohort;
//   - any other member: it waits for that execution (which does no I/O, so
//     a slow member never holds another up) and returns the recorded data
//     without executing — the value never reaches gqlgen.
//
// A response with errors or extensions is not shared: each member that gets
// such a value executes it itself. A cohort remembers the last recentEvents
// values; a member that falls further behind executes what it reads, which
// is correct, only not shared.
package cohort

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// recentEvents is how many executed values a cohort remembers.
const recentEvents = 64

// Cohorts groups identical subscriptions. The zero value is not usable;
// call New.
type Cohorts struct {
	mu      sync.Mutex
	cohorts map[string]*cohort
	live    map[string]*liveCohort // see live.go

	executed atomic.Uint64 // values executed for their cohort (or alone)
	shared   atomic.Uint64 // values answered from another member's execution
	encoded  atomic.Uint64 // of the executed, those the resolver's encoder answered
}

// Encoded reports how many executed values a resolver's encoder answered
// instead of gqlgen (TapEncoded).
func (c *Cohorts) Encoded() uint64 { return c.encoded.Load() }

// Stats reports how many feed values members executed, and how many they
// answered with another member's execution instead.
func (c *Cohorts) Stats() (executed, shared uint64) {
	return c.executed.Load(), c.shared.Load()
}

// New returns an empty set of cohorts.
func New() *Cohorts {
	return &Cohorts{cohorts: make(map[string]*cohort), live: make(map[string]*liveCohort)}
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = (*Cohorts)(nil)

// ExtensionName names the extension for gqlgen.
func (*Cohorts) ExtensionName() string { return "Cohorts" }

// Validate accepts any schema.
func (*Cohorts) Validate(graphql.ExecutableSchema) error { return nil }

// Members reports how many subscriptions are in cohorts (for tests and
// metrics).
func (c *Cohorts) Members() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, co := range c.cohorts {
		n += co.members
	}
	for _, co := range c.live {
		co.mu.Lock()
		n += len(co.members)
		co.mu.Unlock()
	}
	return n
}

// Count reports how many cohorts have members (for tests and metrics).
func (c *Cohorts) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cohorts) + len(c.live)
}

// cohort is one group of identical subscriptions and the values it has
// executed lately, oldest first.
type cohort struct {
	key     string
	members int // guarded by Cohorts.mu

	mu     sync.Mutex
	recent []*execution
}

// execution is one value's execution, shared by the members that get it.
type execution struct {
	id   string
	done chan struct{} // closed when data is set (or the execution failed)
	data []byte        // nil: not shareable; members execute themselves
}

// claim returns the execution of the value id, and whether the caller is
// the first to get it and must execute it.
func (co *cohort) claim(id string) (*execution, bool) {
	co.mu.Lock()
	defer co.mu.Unlock()
	for i := len(co.recent) - 1; i >= 0; i-- {
		if co.recent[i].id == id {
			return co.recent[i], false
		}
	}
	e := &execution{id: id, done: make(chan struct{})}
	if len(co.recent) >= recentEvents {
		copy(co.recent, co.recent[1:])
		co.recent = co.recent[:len(co.recent)-1]
	}
	co.recent = append(co.recent, e)
	return e, true
}

// InterceptOperation puts subscriptions whose resolver taps its feed into
// their cohort; everything else passes through.
func (c *Cohorts) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if !graphql.HasOperationContext(ctx) {
		return next(ctx)
	}
	oc := graphql.GetOperationContext(ctx)
	if oc.Operation == nil || oc.Operation.Operation != ast.Subscription {
		return next(ctx)
	}
	key, ok := cohortKey(ctx, oc)
	if !ok {
		return next(ctx)
	}
	var pulled *Member // a live cohort member this interceptor drives
	var sink *chanSink
	if memberFrom(ctx) == nil { // a transport that does not drive members (SSE)
		sink = newChanSink()
		pulled = NewMember(ctx, sink)
		ctx = WithMember(ctx, pulled)
	}
	t := &tap{}
	h := next(context.WithValue(ctx, tapKey{}, t))
	if pulled != nil && pulled.Tapped() { // a cursor feed: into its live cohort
		c.Join(pulled, h)
		context.AfterFunc(ctx, func() { c.Leave(pulled) })
		return sink.next
	}
	if t.recv == nil { // refused, or a resolver that does not tap
		return h
	}
	co := c.join(key)
	var once sync.Once
	leave := func() { once.Do(func() { c.leave(co) }) }
	stop := context.AfterFunc(ctx, leave)
	return func(ctx context.Context) *graphql.Response {
		v, ok := t.recv(ctx)
		if !ok {
			stop()
			leave()
			t.closeSlot()
			return h(ctx) // gqlgen sees the end of the stream
		}
		id, shareable := identity(v)
		if !shareable {
			c.executed.Add(1)
			return c.execute(ctx, t, h, v)
		}
		e, first := co.claim(id)
		if !first {
			select {
			case <-e.done:
				if e.data != nil {
					c.shared.Add(1)
					return &graphql.Response{Data: e.data}
				}
			case <-ctx.Done():
				return nil
			}
			c.executed.Add(1) // not shareable: execute it here
			return c.execute(ctx, t, h, v)
		}
		var resp *graphql.Response
		defer func() {
			if resp != nil && len(resp.Errors) == 0 && len(resp.Extensions) == 0 && resp.Data != nil {
				// gqlgen reuses the buffer behind Data for the member's
				// next message: the cohort keeps its own copy.
				e.data = append([]byte(nil), resp.Data...)
			}
			close(e.done)
		}()
		c.executed.Add(1)
		resp = c.execute(ctx, t, h, v)
		return resp
	}
}

func (c *Cohorts) join(key string) *cohort {
	c.mu.Lock()
	defer c.mu.Unlock()
	co := c.cohorts[key]
	if co == nil {
		co = &cohort{key: key}
		c.cohorts[key] = co
	}
	co.members++
	return co
}

func (c *Cohorts) leave(co *cohort) {
	c.mu.Lock()
	defer c.mu.Unlock()
	co.members--
	if co.members == 0 && c.cohorts[co.key] == co {
		delete(c.cohorts, co.key)
	}
}

// cohortKey identifies what a subscription resolves to: its document,
// operation, variables and the caller's role. ok is false when the
// variables cannot be encoded (then the subscription runs alone).
func cohortKey(ctx context.Context, oc *graphql.OperationContext) (string, bool) {
	vars, err := json.Marshal(oc.Variables) // map keys come out sorted
	if err != nil {
		return "", false
	}
	role := ""
	if a, ok := ipa.ActorFrom(ctx); ok {
		role = string(a.Role)
	}
	return role + "\x00" + oc.OperationName + "\x00" + string(vars) + "\x00" + oc.RawQuery, true
}

// identity names a feed value so that members can tell they got the same
// one: an event by its id, a task view by id and version, a batch by its
// first event and length (a batch is consecutive events).
func identity(v any) (string, bool) {
	switch v := v.(type) {
	case *ipa.Event:
		if v == nil {
			return "", false
		}
		return "e" + v.ID, true
	case *ipa.Task:
		if v == nil {
			return "", false
		}
		return "t" + v.ID + "@" + strconv.FormatInt(v.Version, 10), true
	case []*ipa.Event:
		if len(v) == 0 || v[0] == nil {
			return "", false
		}
		return "b" + v[0].ID + "+" + strconv.Itoa(len(v)), true
	}
	return "", false
}

type tapKey struct{}

// tap connects a tapped resolver's feed to the interceptor: recv takes the
// feed's next value, send hands one value to gqlgen, closeSlot ends
// gqlgen's stream.
type tap struct {
	recv      func(ctx context.Context) (any, bool)
	send      func(v any)
	encode    func(v any) ([]byte, bool) // nil: gqlgen executes every value
	closeSlot func()
}

// execute answers v: encoded by the resolver's encoder when it can, else
// executed by gqlgen through the operation's handler h.
func (c *Cohorts) execute(ctx context.Context, t *tap, h graphql.ResponseHandler, v any) *graphql.Response {
	if t.encode != nil {
		if data, ok := t.encode(v); ok {
			c.encoded.Add(1)
			return &graphql.Response{Data: data}
		}
	}
	t.send(v)
	return h(ctx)
}

// Tap lets the operation's cohort read a subscription resolver's feed:
// inside a Cohorts interceptor it returns the channel gqlgen should read
// instead of src, else src itself. A resolver returns Tap(ctx, ch, err).
func Tap[T any](ctx context.Context, src <-chan T, err error) (<-chan T, error) {
	return TapEncoded(ctx, src, err, nil)
}

// TapEncoded is Tap for a resolver that can also encode a value's response
// data itself, as gqlgen would: encode returns false for a value gqlgen
// must execute.
func TapEncoded[T any](ctx context.Context, src <-chan T, err error, encode func(T) ([]byte, bool)) (<-chan T, error) {
	t, _ := ctx.Value(tapKey{}).(*tap)
	if t == nil || err != nil || t.recv != nil {
		return src, err
	}
	slot := make(chan T, 1)
	t.recv = func(ctx context.Context) (any, bool) {
		select {
		case v, ok := <-src:
			return v, ok
		case <-ctx.Done():
			return nil, false
		}
	}
	t.send = func(v any) { slot <- v.(T) }
	if encode != nil {
		t.encode = func(v any) ([]byte, bool) { return encode(v.(T)) }
	}
	var once sync.Once
	t.closeSlot = func() { once.Do(func() { close(slot) }) }
	return slot, nil
}
