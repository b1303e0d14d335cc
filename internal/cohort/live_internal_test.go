package cohort

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/stretchr/testify/require"
)

// memLog is a feed source in memory: values 1, 2, … appended by the test;
// an open reading streams every value after its cursor, waiting for more.
type memLog struct {
	mu   sync.Mutex
	vals int64
	more chan struct{} // closed and replaced on every append
}

func newMemLog() *memLog { return &memLog{more: make(chan struct{})} }

func (l *memLog) append(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.vals += int64(n)
	close(l.more)
	l.more = make(chan struct{})
}

func (l *memLog) source() *source {
	return &source{
		open: func(ctx context.Context, after int64) (func(context.Context) (any, bool), func() int, error) {
			next := after + 1
			recv := func(ctx context.Context) (any, bool) {
				for {
					l.mu.Lock()
					have, more := l.vals, l.more
					l.mu.Unlock()
					if next <= have {
						next++
						return next - 1, true
					}
					select {
					case <-more:
					case <-ctx.Done():
						return nil, false
					}
				}
			}
			pending := func() int {
				l.mu.Lock()
				defer l.mu.Unlock()
				return int(l.vals - (next - 1))
			}
			return recv, pending, nil
		},
		seq: func(v any) int64 { return v.(int64) },
	}
}

// blockSink records what its member is sent. While blocked it refuses every
// offer and holds every send, as a connection whose client stopped reading
// does; unblock lets the held sends through.
type blockSink struct {
	mu      sync.Mutex
	got     []string
	blocked chan struct{} // closed when unblocked
}

func (s *blockSink) Offer(resp *graphql.Response) bool {
	select {
	case <-s.blocked:
	default:
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, string(resp.Data))
	return true
}

func (s *blockSink) Send(ctx context.Context, resp *graphql.Response) bool {
	select {
	case <-s.blocked:
	case <-ctx.Done():
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, string(resp.Data))
	return true
}

func (s *blockSink) End() {}

func (s *blockSink) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// member makes a member of the cohort key over src whose handler answers a
// value with its number.
func member(ctx context.Context, sink Sink, src *source) (*Member, graphql.ResponseHandler) {
	slot := make(chan any, 1)
	m := &Member{ctx: ctx, sink: sink, key: "k", src: src, last: src.start}
	m.slot = func(v any) {
		select {
		case <-slot:
		default:
		}
		slot <- v
	}
	exec := func(ctx context.Context) *graphql.Response {
		select {
		case v := <-slot:
			return &graphql.Response{Data: []byte(strconv.FormatInt(v.(int64), 10))}
		case <-ctx.Done():
			return nil
		}
	}
	return m, exec
}

func upTo(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(i + 1)
	}
	return out
}

// A member whose connection takes nothing catches up alone once it takes
// again, and rejoins: it gets every value in order, once, while the other
// member gets each as it comes; then the cohort writes to both again.
func TestLiveCohortBlockedMemberCatchesUpAndRejoins(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := newMemLog()
	src := log.source()
	hub := New()

	fast := &blockSink{blocked: make(chan struct{})}
	close(fast.blocked)
	slow := &blockSink{blocked: make(chan struct{})}
	mf, ef := member(ctx, fast, src)
	ms, es := member(ctx, slow, src)
	hub.Join(mf, ef)
	hub.Join(ms, es)
	defer hub.Leave(mf)
	defer hub.Leave(ms)

	const first = 3 * recentValues // more than the cohort remembers
	log.append(first)
	require.Eventually(t, func() bool { return len(fast.received()) == first }, time.Minute, time.Millisecond)
	require.Equal(t, upTo(first), fast.received())
	require.Empty(t, slow.received())

	close(slow.blocked) // the client reads again
	require.Eventually(t, func() bool { return len(slow.received()) == first }, time.Minute, time.Millisecond)
	require.Equal(t, upTo(first), slow.received())
	co := mf.co
	require.Eventually(t, func() bool {
		co.mu.Lock()
		defer co.mu.Unlock()
		return !ms.solo
	}, time.Minute, time.Millisecond, "the member never rejoined")

	log.append(10)
	require.Eventually(t, func() bool { return len(slow.received()) == first+10 && len(fast.received()) == first+10 }, time.Minute, time.Millisecond)
	require.Equal(t, upTo(first+10), slow.received())
	require.Equal(t, upTo(first+10), fast.received())
}
