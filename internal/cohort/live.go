package cohort

import (
	"bytes"
	"context"
	"slices"
	"sync"

	"github.com/99designs/gqlgen/graphql"

	"github.com/ipa-dev/ipa/internal/feed"
)

// Live cohorts: the cohorts of a transport that lets the cohort write to
// its members (package wstransport). There a cohort has one feed, not one per
// member, and pushes each value to every member itself, so an idle member
// costs no goroutine and no buffer of its own:
//
//   - the cohort reads its feed (a feed.Source, opened once), executes each
//     value once through the handler of one of its members, and offers the
//     encoded payload to every member whose cursor is behind it. An offer
//     never waits (Sink.Offer);
//   - a member whose connection has no room for the offer, or that joins
//     with a cursor older than the values the cohort remembers, catches up
//     alone: it opens the source at its own cursor, executes and sends what
//     it reads itself, waiting for its own connection, and rejoins the
//     cohort once it is within the values the cohort remembers.
//
// Each member keeps its own cursor, so the guarantees of the feed hold per
// member across every switch: values in order, none missing, none twice.

// Sink is how a live cohort writes to one member.
type Sink interface {
	// Offer queues the member's next response without waiting; false when
	// there is no room. A response may be shared by every member: the sink
	// must not change it.
	Offer(resp *graphql.Response) bool
	// Send writes one response, waiting for room; false when the member's
	// connection or operation is gone.
	Send(ctx context.Context, resp *graphql.Response) bool
	// End ends the member's operation: its feed is over.
	End()
}

// Member is one subscription of a live cohort. The transport makes it
// (NewMember), puts it in the operation's context (WithMember), and hands it
// to Join if the resolver tapped its source.
type Member struct {
	ctx  context.Context
	sink Sink

	// Set by TapSource, in the resolver.
	key  string
	src  *source
	slot func(v any) // hands one value to the member's gqlgen handler

	// Set by Join.
	exec graphql.ResponseHandler
	co   *liveCohort

	// Guarded by co.mu once joined.
	last int64 // the cursor of the last value sent (or the start)
	solo bool  // catching up alone
	gone bool
}

// NewMember returns a member writing to sink, for the operation of ctx.
func NewMember(ctx context.Context, sink Sink) *Member { return &Member{ctx: ctx, sink: sink} }

type memberKey struct{}

// WithMember marks the operation of ctx as one a live cohort may drive.
func WithMember(ctx context.Context, m *Member) context.Context {
	return context.WithValue(ctx, memberKey{}, m)
}

func memberFrom(ctx context.Context) *Member {
	m, _ := ctx.Value(memberKey{}).(*Member)
	return m
}

// Tapped reports whether the operation's resolver handed its source over:
// then the transport calls Join and the cohort drives the operation.
func (m *Member) Tapped() bool { return m.src != nil }

// source is a feed.Source without its type.
type source struct {
	start int64
	open  func(ctx context.Context, after int64) (recv func(context.Context) (any, bool), pending func() int, err error)
	seq   func(any) int64
}

// TapSource is what a subscription resolver with a cursor feed returns: in
// an operation a live cohort drives (WithMember), it hands src to the
// cohort and returns the channel gqlgen reads; elsewhere it opens src at its
// start and passes the feed to Tap.
func TapSource[T any](ctx context.Context, src feed.Source[T], err error) (<-chan T, error) {
	if err != nil {
		return nil, err
	}
	m := memberFrom(ctx)
	key, ok := "", false
	if m != nil && m.src == nil && graphql.HasOperationContext(ctx) {
		key, ok = cohortKey(ctx, graphql.GetOperationContext(ctx))
	}
	if !ok {
		ch, err := src.Open(ctx, src.Start)
		return Tap(ctx, ch, err)
	}
	slot := make(chan T, 1)
	m.key, m.last = key, src.Start
	m.slot = func(v any) {
		// A handler that returned without reading (its operation ended
		// just then) left its value: the new one replaces it.
		select {
		case <-slot:
		default:
		}
		slot <- v.(T)
	}
	m.src = &source{
		start: src.Start,
		open: func(ctx context.Context, after int64) (func(context.Context) (any, bool), func() int, error) {
			ch, err := src.Open(ctx, after)
			if err != nil {
				return nil, nil, err
			}
			recv := func(ctx context.Context) (any, bool) {
				select {
				case v, ok := <-ch:
					return v, ok
				case <-ctx.Done():
					return nil, false
				}
			}
			return recv, func() int { return len(ch) }, nil
		},
		seq: func(v any) int64 { return src.Seq(v.(T)) },
	}
	return slot, nil
}

// liveCohort is one live cohort.
type liveCohort struct {
	hub    *Cohorts
	key    string
	src    *source
	cancel context.CancelFunc // stops the cohort's feed
	closed bool               // guarded by hub.mu: no longer in hub.live

	mu      sync.Mutex
	members map[*Member]struct{}
	base    int64        // the ring holds every value after base
	ring    []*liveValue // the values sent lately, oldest first
}

// liveValue is one value of the feed and, once executed, its response.
type liveValue struct {
	seq  int64
	v    any
	resp *graphql.Response // shared by every member; nil until executed, or when not shareable
	by   *Member           // whose handler executed it
}

// Join puts m, whose resolver tapped its source, into its cohort; exec is
// the operation's gqlgen handler. The cohort drives the operation until
// Leave.
func (c *Cohorts) Join(m *Member, exec graphql.ResponseHandler) {
	m.exec = exec
	c.mu.Lock()
	co := c.live[m.key]
	if co == nil {
		ctx, cancel := context.WithCancel(context.Background())
		co = &liveCohort{hub: c, key: m.key, src: m.src, cancel: cancel,
			members: map[*Member]struct{}{}, base: m.src.start}
		c.live[m.key] = co
		go co.run(ctx)
	}
	co.mu.Lock()
	// The cohort stays open: closing it needs c.mu, and it has a member
	// from now on. Replaying may execute; other cohorts need not wait.
	c.mu.Unlock()
	defer co.mu.Unlock()
	co.members[m] = struct{}{}
	m.co = co
	m.key, m.src = co.key, co.src // the same; the member's own copies go
	if m.last < co.base || !co.replay(m) {
		co.goSolo(m)
	}
}

// Leave takes m out of its cohort, once its operation is over. The last
// member to leave stops the cohort.
func (c *Cohorts) Leave(m *Member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	co := m.co
	if co == nil {
		return
	}
	co.mu.Lock()
	delete(co.members, m)
	m.gone = true
	empty := len(co.members) == 0
	co.mu.Unlock()
	if empty && !co.closed {
		co.closed = true
		delete(c.live, co.key)
		co.cancel()
	}
}

// run reads the cohort's feed and sends each value to the members.
func (co *liveCohort) run(ctx context.Context) {
	recv, _, err := co.src.open(ctx, co.base)
	if err != nil {
		co.endAll(ctx)
		return
	}
	for {
		v, ok := recv(ctx)
		if !ok {
			co.endAll(ctx)
			return
		}
		lv := &liveValue{seq: co.src.seq(v), v: v}
		lv.resp, lv.by = co.execute(lv.v)
		co.mu.Lock()
		co.remember(lv)
		for m := range co.members {
			if !m.solo && m.last < lv.seq && !co.offer(m, lv) {
				co.goSolo(m)
			}
		}
		co.mu.Unlock()
	}
}

// recentValues is how many values a live cohort remembers for members that
// join, or rejoin, a little behind it.
const recentValues = 64

func (co *liveCohort) remember(lv *liveValue) {
	if len(co.ring) == recentValues {
		co.base = co.ring[0].seq
		copy(co.ring, co.ring[1:])
		co.ring = co.ring[:len(co.ring)-1]
	}
	co.ring = append(co.ring, lv)
}

// execute runs the value through the handler of a member that is not
// catching up, and returns the response if every member may share it, and
// that member.
func (co *liveCohort) execute(v any) (*graphql.Response, *Member) {
	var tried []*Member // only when an executor left: nothing to allocate per value
	for {
		co.mu.Lock()
		var ex *Member
		for m := range co.members {
			if !m.solo && !slices.Contains(tried, m) {
				ex = m
				break
			}
		}
		co.mu.Unlock()
		if ex == nil {
			return nil, nil // executed by each member that needs it
		}
		if ex.ctx.Err() != nil {
			tried = append(tried, ex)
			continue
		}
		ex.slot(v)
		resp := ex.exec(ex.ctx)
		if resp == nil { // the executor just left
			tried = append(tried, ex)
			continue
		}
		co.hub.executed.Add(1)
		return shareable(resp), ex
	}
}

// shareable returns a copy of resp if it may be sent to every member — data
// only; errors and extensions may be the member's own — else nil. A copy:
// gqlgen reuses the buffer behind Data for the handler's next response.
func shareable(resp *graphql.Response) *graphql.Response {
	if len(resp.Errors) != 0 || len(resp.Extensions) != 0 || resp.Data == nil {
		return nil
	}
	return &graphql.Response{Data: bytes.Clone(resp.Data)}
}

// own is a response a sink may keep: gqlgen reuses the buffer behind Data
// for the handler's next response.
func own(resp *graphql.Response) *graphql.Response {
	r := *resp
	r.Data = bytes.Clone(resp.Data)
	return &r
}

// offer offers lv to m without waiting (co.mu held). A value the cohort
// could not share is executed for m alone.
func (co *liveCohort) offer(m *Member, lv *liveValue) bool {
	resp := lv.resp
	switch {
	case resp == nil:
		m.slot(lv.v)
		if resp = m.exec(m.ctx); resp == nil {
			return true // m is leaving
		}
		co.hub.executed.Add(1)
		if lv.resp = shareable(resp); lv.resp != nil {
			resp, lv.by = lv.resp, m // the next member shares it
		} else {
			resp = own(resp)
		}
	case m != lv.by:
		co.hub.shared.Add(1)
	}
	if !m.sink.Offer(resp) {
		return false
	}
	m.last = lv.seq
	return true
}

// replay offers m the remembered values after its cursor (co.mu held).
// false: the connection has no room, m must catch up alone.
func (co *liveCohort) replay(m *Member) bool {
	for _, lv := range co.ring {
		if lv.seq > m.last && !co.offer(m, lv) {
			return false
		}
	}
	return true
}

// goSolo starts m's catch-up (co.mu held).
func (co *liveCohort) goSolo(m *Member) {
	if m.solo || m.gone {
		return
	}
	m.solo = true
	go co.catchUp(m, m.last)
}

// catchUp feeds m from its own reading of the source, from its cursor,
// until it can rejoin the cohort.
func (co *liveCohort) catchUp(m *Member, last int64) {
	ctx, cancel := context.WithCancel(m.ctx)
	defer cancel()
	recv, pending, err := co.src.open(ctx, last)
	if err != nil {
		m.sink.End()
		return
	}
	for {
		v, ok := recv(ctx)
		if !ok {
			if ctx.Err() == nil {
				m.sink.End() // the feed failed
			}
			return
		}
		seq := co.src.seq(v)
		if seq <= last {
			continue
		}
		m.slot(v)
		resp := m.exec(m.ctx)
		if resp == nil || !m.sink.Send(ctx, own(resp)) {
			return
		}
		co.hub.executed.Add(1)
		last = seq
		if pending() == 0 {
			var back bool
			if back, last = co.rejoin(m, last); back {
				return
			}
		}
	}
}

// rejoin makes m a live member again if the cohort remembers every value
// after last and the connection takes them. It returns m's cursor: the
// remembered values it did send move it on.
func (co *liveCohort) rejoin(m *Member, last int64) (bool, int64) {
	co.mu.Lock()
	defer co.mu.Unlock()
	if m.gone {
		return true, last
	}
	if last < co.base {
		return false, last
	}
	m.last = last
	if !co.replay(m) {
		return false, m.last
	}
	m.solo = false
	return true, m.last
}

// endAll ends every member when the cohort's feed is over — unless the
// cohort was stopped, which only happens when it has no members.
func (co *liveCohort) endAll(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	co.hub.mu.Lock()
	if !co.closed {
		co.closed = true
		delete(co.hub.live, co.key)
	}
	co.hub.mu.Unlock()
	co.mu.Lock()
	members := make([]*Member, 0, len(co.members))
	for m := range co.members {
		members = append(members, m)
	}
	co.mu.Unlock()
	for _, m := range members {
		m.sink.End()
	}
}
