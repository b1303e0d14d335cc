package cohort

import (
	"context"
	"sync"

	"github.com/99designs/gqlgen/graphql"
)

// chanSink lets a live cohort drive an operation of a transport that pulls
// its responses from gqlgen's handler (SSE): the cohort puts responses in a
// small buffer and the handler the transport calls takes them out.
type chanSink struct {
	ch    chan *graphql.Response
	ended chan struct{}
	once  sync.Once
}

// chanSinkBuffer is how many responses wait for a pulling transport before
// the member catches up on its own instead.
const chanSinkBuffer = 16

func newChanSink() *chanSink {
	return &chanSink{ch: make(chan *graphql.Response, chanSinkBuffer), ended: make(chan struct{})}
}

func (s *chanSink) Offer(resp *graphql.Response) bool {
	select {
	case s.ch <- resp:
		return true
	default:
		return false
	}
}

func (s *chanSink) Send(ctx context.Context, resp *graphql.Response) bool {
	select {
	case s.ch <- resp:
		return true
	case <-s.ended:
		return false
	case <-ctx.Done():
		return false
	}
}

func (s *chanSink) End() { s.once.Do(func() { close(s.ended) }) }

// next is the operation's handler as the transport sees it: the next
// response, or nil once the feed ended (after what was already queued) or
// the operation did.
func (s *chanSink) next(ctx context.Context) *graphql.Response {
	select {
	case r := <-s.ch:
		return r
	case <-ctx.Done():
		return nil
	case <-s.ended:
		select {
		case r := <-s.ch:
			return r
		default:
			return nil
		}
	}
}
