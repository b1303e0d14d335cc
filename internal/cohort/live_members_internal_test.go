package cohort

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/stretchr/testify/require"
)

// The live cohort against fake members and a fake source (memLog, member,
// upTo in live_internal_test.go): joining, leaving, slow members, a member
// whose operation ends, and the end of the feed. Every test checks what
// each member received — in order, no gap, no duplicate — not how long it
// took.

const waitFor = time.Minute // generous: the machine is shared and -race is slow

// recSink records what its member is sent; with room > 0 it is a bounded
// queue a reader goroutine drains (as a connection's send queue is), so an
// Offer finds it full when the reader lags. ended is closed by End.
type recSink struct {
	mu    sync.Mutex
	got   []string
	ended chan struct{}
	once  sync.Once

	queue chan string // nil: unbounded, every offer is taken at once
}

func newRecSink() *recSink { return &recSink{ended: make(chan struct{})} }

// newQueueSink returns a sink with room for room responses, drained by a
// reader that yields after every response it takes (a slow client). The
// reader stops with ctx.
func newQueueSink(ctx context.Context, room int, pause func()) *recSink {
	s := &recSink{ended: make(chan struct{}), queue: make(chan string, room)}
	go func() {
		for {
			select {
			case d := <-s.queue:
				s.mu.Lock()
				s.got = append(s.got, d)
				s.mu.Unlock()
				pause()
			case <-ctx.Done():
				return
			}
		}
	}()
	return s
}

func (s *recSink) Offer(resp *graphql.Response) bool {
	if s.queue != nil {
		select {
		case s.queue <- string(resp.Data):
			return true
		default:
			return false
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, string(resp.Data))
	return true
}

func (s *recSink) Send(ctx context.Context, resp *graphql.Response) bool {
	if s.queue != nil {
		select {
		case s.queue <- string(resp.Data):
			return true
		case <-ctx.Done():
			return false
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, string(resp.Data))
	return true
}

func (s *recSink) End() { s.once.Do(func() { close(s.ended) }) }

func (s *recSink) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func (s *recSink) isEnded() bool {
	select {
	case <-s.ended:
		return true
	default:
		return false
	}
}

// countingSource wraps src so the test can see how many readings of the
// source are open, and end every reading (a feed that fails).
type countingSource struct {
	open   atomic.Int64 // readings not yet stopped
	failed chan struct{}
}

func (c *countingSource) wrap(src *source) *source {
	c.failed = make(chan struct{})
	return &source{
		start: src.start,
		seq:   src.seq,
		open: func(ctx context.Context, after int64) (func(context.Context) (any, bool), func() int, error) {
			c.open.Add(1)
			context.AfterFunc(ctx, func() { c.open.Add(-1) })
			recv, pending, err := src.open(ctx, after)
			if err != nil {
				return nil, nil, err
			}
			// The reading stops with its caller's context or when the
			// test fails the source; the goroutine ends with either.
			rctx, cancel := context.WithCancel(ctx)
			go func() {
				defer cancel()
				select {
				case <-c.failed:
				case <-rctx.Done():
				}
			}()
			return func(context.Context) (any, bool) {
				return recv(rctx)
			}, pending, nil
		},
	}
}

// countingMember is member with a count of its handler's executions.
func countingMember(ctx context.Context, sink Sink, src *source, execs *atomic.Int64) (*Member, graphql.ResponseHandler) {
	m, exec := member(ctx, sink, src)
	return m, func(ctx context.Context) *graphql.Response {
		r := exec(ctx)
		if r != nil {
			execs.Add(1)
		}
		return r
	}
}

func requireReceived(t *testing.T, s *recSink, want []string, msg string) {
	t.Helper()
	require.Eventually(t, func() bool { return len(s.received()) >= len(want) }, waitFor, time.Millisecond, msg)
	require.Equal(t, want, s.received(), msg)
}

// Members that keep up share one execution per value: the cohort executes
// each value once, through one member's handler, and offers the same
// response to all of them.
func TestLiveCohortMembersShareOneExecution(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := newMemLog()
	src := log.source()
	hub := New()

	var execs atomic.Int64
	sinks := make([]*recSink, 3)
	for i := range sinks {
		sinks[i] = newRecSink()
		m, exec := countingMember(ctx, sinks[i], src, &execs)
		hub.Join(m, exec)
		defer hub.Leave(m)
	}
	require.Equal(t, 1, hub.Count())
	require.Equal(t, 3, hub.Members())

	log.append(20)
	for i, s := range sinks {
		requireReceived(t, s, upTo(20), fmt.Sprintf("member %d", i))
	}
	require.EqualValues(t, 20, execs.Load(), "each value is executed once for the whole cohort")
	executed, shared := hub.Stats()
	require.EqualValues(t, 20, executed)
	require.EqualValues(t, 40, shared, "the two other members were answered from the execution")
}

// A member joining a cohort that is under way gets what the cohort still
// remembers after its own cursor, from the cohort's executions, then the
// live values; one joining with a cursor the cohort no longer remembers
// catches up alone from its own reading, then rejoins.
func TestLiveCohortJoinFromOwnCursor(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := newMemLog()
	src := log.source()
	hub := New()

	first := newRecSink()
	m1, e1 := member(ctx, first, src)
	hub.Join(m1, e1)
	defer hub.Leave(m1)
	log.append(5)
	requireReceived(t, first, upTo(5), "first member")

	// Within what the cohort remembers: a cursor at 3 gets 4 and 5 from
	// the cohort, without executing them itself.
	var execs atomic.Int64
	near := newRecSink()
	m2, e2 := countingMember(ctx, near, src, &execs)
	m2.last = 3
	hub.Join(m2, e2)
	defer hub.Leave(m2)
	requireReceived(t, near, []string{"4", "5"}, "member joining at 3")
	require.Zero(t, execs.Load(), "remembered values are shared, not executed again")
	require.Equal(t, 1, hub.Count(), "same key: same cohort")

	// Past what it remembers: the joiner starts from 0 and reads alone.
	log.append(3 * recentValues)
	total := 5 + 3*recentValues
	requireReceived(t, first, upTo(total), "first member")
	far := newRecSink()
	m3, e3 := member(ctx, far, src)
	hub.Join(m3, e3)
	defer hub.Leave(m3)
	requireReceived(t, far, upTo(total), "member joining at 0")
	require.Eventually(t, func() bool {
		m1.co.mu.Lock()
		defer m1.co.mu.Unlock()
		return !m3.solo
	}, waitFor, time.Millisecond, "the late member never rejoined")

	log.append(5)
	total += 5
	for name, s := range map[string]*recSink{"first": first, "far": far} {
		requireReceived(t, s, upTo(total), name)
	}
	requireReceived(t, near, upTo(total)[3:], "near")
}

// Members join while the feed runs, each from cursor 0, behind a slow
// connection (a small queue drained by a reader that yields after every
// response): every member gets every value in order, once, however often it
// moved between the cohort and its own catch-up.
func TestLiveCohortConcurrentJoinsAndSlowMembersKeepOrder(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := newMemLog()
	src := log.source()
	hub := New()

	const members, rounds, per = 6, 10, 40
	sinks := make([]*recSink, 0, members)
	var wg sync.WaitGroup
	for i := range members {
		// Half the members read slowly; half keep up.
		pause := func() {}
		if i%2 == 1 {
			pause = func() { time.Sleep(50 * time.Microsecond) }
		}
		s := newQueueSink(ctx, 4, pause)
		sinks = append(sinks, s)
		m, exec := member(ctx, s, src)
		wg.Add(1)
		go func() {
			defer wg.Done()
			hub.Join(m, exec)
		}()
		defer hub.Leave(m)
		log.append(per) // the feed moves on between joins
	}
	wg.Wait()
	for range rounds {
		log.append(per)
	}
	total := (members + rounds) * per
	for i, s := range sinks {
		requireReceived(t, s, upTo(total), fmt.Sprintf("member %d", i))
	}
	require.Equal(t, 1, hub.Count())
}

// Leaving: a member that left is sent nothing more; the last member to
// leave stops the cohort and its reading of the source; a member joining
// afterwards starts a new cohort.
func TestLiveCohortLeave(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := newMemLog()
	var counts countingSource
	src := counts.wrap(log.source())
	hub := New()

	a, b := newRecSink(), newRecSink()
	ma, ea := member(ctx, a, src)
	mb, eb := member(ctx, b, src)
	hub.Join(ma, ea)
	hub.Join(mb, eb)
	co := ma.co
	log.append(3)
	requireReceived(t, a, upTo(3), "a")
	requireReceived(t, b, upTo(3), "b")

	hub.Leave(ma)
	hub.Leave(ma) // twice is once
	require.Equal(t, 1, hub.Members())
	log.append(3)
	requireReceived(t, b, upTo(6), "b stays")
	require.Equal(t, upTo(3), a.received(), "a left: nothing more")

	hub.Leave(mb)
	require.Zero(t, hub.Count())
	require.Zero(t, hub.Members())
	require.Eventually(t, func() bool { return counts.open.Load() == 0 }, waitFor, time.Millisecond,
		"the cohort's reading of the source outlived its last member")
	require.False(t, a.isEnded() || b.isEnded(), "leaving ends nobody's operation: the transport does")

	c := newRecSink()
	mc, ec := member(ctx, c, src)
	hub.Join(mc, ec)
	defer hub.Leave(mc)
	require.NotSame(t, co, mc.co, "a stopped cohort is never joined again")
	log.append(1)
	requireReceived(t, c, upTo(7), "c")
}

// A member whose operation ended but has not left yet (its context is
// cancelled; the transport's Leave is on its way) is never the one whose
// handler executes for the others: the cohort moves on to a live member.
func TestLiveCohortEndedOperationIsSkipped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := newMemLog()
	src := log.source()
	hub := New()

	gone, live := newRecSink(), newRecSink()
	gctx, gcancel := context.WithCancel(ctx)
	var goneExecs atomic.Int64
	mg, eg := countingMember(gctx, gone, src, &goneExecs)
	ml, el := member(ctx, live, src)
	hub.Join(mg, eg)
	hub.Join(ml, el)
	defer hub.Leave(mg)
	defer hub.Leave(ml)
	gcancel()

	log.append(10)
	requireReceived(t, live, upTo(10), "live member")
	require.Zero(t, goneExecs.Load(), "an ended operation's handler executed for the cohort")
}

// A feed that ends (the store failed, the server is closing) ends every
// member's operation and takes the cohort out of the hub.
func TestLiveCohortFeedEndEndsMembers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := newMemLog()
	var counts countingSource
	src := counts.wrap(log.source())
	hub := New()

	sinks := []*recSink{newRecSink(), newRecSink()}
	for _, s := range sinks {
		m, exec := member(ctx, s, src)
		hub.Join(m, exec)
		defer hub.Leave(m)
	}
	log.append(2)
	for _, s := range sinks {
		requireReceived(t, s, upTo(2), "before the end")
	}
	close(counts.failed)
	for i, s := range sinks {
		select {
		case <-s.ended:
		case <-time.After(waitFor):
			t.Fatalf("member %d was not ended", i)
		}
	}
	require.Eventually(t, func() bool { return hub.Count() == 0 }, waitFor, time.Millisecond)
}

// chanSink, the sink of a transport that pulls (SSE): a bounded buffer that
// refuses offers when full, hands out what was queued before the end, and
// then reports the end.
func TestChanSink(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newChanSink()
	for i := range chanSinkBuffer {
		require.True(t, s.Offer(&graphql.Response{Data: []byte(strconv.Itoa(i))}))
	}
	require.False(t, s.Offer(&graphql.Response{Data: []byte("x")}), "a full buffer refuses: the member catches up alone")

	s.End()
	s.End() // twice is once
	require.False(t, s.Send(ctx, &graphql.Response{}), "no send after the end")
	for i := range chanSinkBuffer {
		r := s.next(ctx)
		require.NotNil(t, r, "queued before the end: still delivered")
		require.Equal(t, strconv.Itoa(i), string(r.Data))
	}
	require.Nil(t, s.next(ctx), "then the end")

	s2 := newChanSink()
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	require.Nil(t, s2.next(cctx), "the operation ended")
	for range chanSinkBuffer {
		s2.Offer(&graphql.Response{})
	}
	require.False(t, s2.Send(cctx, &graphql.Response{}), "a full buffer and a cancelled operation: no wait")
}

// A member catching up alone may read ahead of the cohort (the cohort is
// still executing a value the member already read itself) and rejoin with a
// cursor past it: the cohort must not send it that value again.
func TestLiveCohortRejoinAheadOfTheCohortGetsNoDuplicate(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := newMemLog()
	src := log.source()
	hub := New()

	const held = 3*recentValues + 1
	entered, release := make(chan struct{}), make(chan struct{})
	xs := newRecSink()
	mx, ex := member(ctx, xs, src)
	hub.Join(mx, func(ctx context.Context) *graphql.Response {
		r := ex(ctx)
		if r != nil && string(r.Data) == strconv.Itoa(held) {
			close(entered) // the cohort is executing held through x
			<-release
		}
		return r
	})
	defer hub.Leave(mx)
	log.append(held - 1) // past what the cohort remembers
	requireReceived(t, xs, upTo(held-1), "x")
	log.append(1)
	<-entered

	// y joins behind the cohort's memory: it reads alone, up to held, and
	// rejoins while the cohort is still inside held.
	ys := newRecSink()
	my, ey := member(ctx, ys, src)
	hub.Join(my, ey)
	defer hub.Leave(my)
	requireReceived(t, ys, upTo(held), "y alone")
	require.Eventually(t, func() bool {
		mx.co.mu.Lock()
		defer mx.co.mu.Unlock()
		return !my.solo
	}, waitFor, time.Millisecond, "y never rejoined")

	close(release)
	log.append(1)
	requireReceived(t, xs, upTo(held+1), "x")
	requireReceived(t, ys, upTo(held+1), "y")
}
