package httpserver

import (
	"context"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// maxLimiters bounds the limiter map: past it, idle entries go first, then
// arbitrary ones. Dropping an entry only forgets its spent budget, so a
// flood of invented keys cannot grow memory, at worst refill someone's burst.
const maxLimiters = 1 << 16

// rateLimiter keeps one token bucket per caller: per token for requests
// that carry an Authorization header, per remote address for the others.
type rateLimiter struct {
	limit rate.Limit
	burst int
	idle  time.Duration // a bucket unused this long is full again: forgetting it changes nothing
	max   int
	now   func() time.Time

	mu        sync.Mutex
	entries   map[string]*limiterEntry
	lastSweep time.Time
}

type limiterEntry struct {
	lim  *rate.Limiter
	seen time.Time
	good bool // a token's entry: the token authenticated (see rateNote)
}

// failedAuthCost is what a failed authentication costs its remote address,
// in requests (at most the burst): a caller guessing tokens runs out of
// budget after a few guesses, and waits for as many requests' worth.
const failedAuthCost = 5

// newRateLimiter returns a limiter of perSecond requests with bursts of
// burst (at least 1; 0 means max(1, perSecond)), or nil when perSecond is 0:
// no limit.
func newRateLimiter(perSecond float64, burst int) *rateLimiter {
	if perSecond <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	refill := time.Duration(float64(burst) / perSecond * float64(time.Second))
	return &rateLimiter{
		limit:   rate.Limit(perSecond),
		burst:   burst,
		idle:    max(refill, time.Second),
		max:     maxLimiters,
		now:     time.Now,
		entries: make(map[string]*limiterEntry),
	}
}

// allow takes one request from key's bucket. When the bucket is empty it
// returns false and how long until a request would be allowed.
func (l *rateLimiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	return take(l.entry(key, now), now)
}

// admit takes one request of a caller with a token (tokenKey) or without
// (tokenKey ""). A token that has not yet authenticated here also takes one
// from its address's bucket: inventing a new token for every request buys
// no new budget. The rateNote it returns charges failed authentications to
// the address (see withAuth).
func (l *rateLimiter) admit(addrKey, tokenKey string) (bool, time.Duration, *rateNote) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	note := &rateNote{l: l, addrKey: addrKey, tokenKey: tokenKey}
	if tokenKey == "" {
		ok, wait := take(l.entry(addrKey, now), now)
		return ok, wait, note
	}
	te := l.entry(tokenKey, now)
	if !te.good {
		if ok, wait := take(l.entry(addrKey, now), now); !ok {
			return false, wait, note
		}
	}
	ok, wait := take(te, now)
	return ok, wait, note
}

// entry returns key's bucket, made full when it is new (l.mu held).
func (l *rateLimiter) entry(key string, now time.Time) *limiterEntry {
	if now.Sub(l.lastSweep) >= l.idle {
		l.sweep(now)
	}
	e := l.entries[key]
	if e == nil {
		if len(l.entries) >= l.max {
			l.sweep(now)
			l.shrink()
		}
		e = &limiterEntry{lim: rate.NewLimiter(l.limit, l.burst)}
		l.entries[key] = e
	}
	e.seen = now
	return e
}

// take takes one request from e, or reports how long until it could.
func take(e *limiterEntry, now time.Time) (bool, time.Duration) {
	res := e.lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// rateNote is what authentication tells the limiter about one request.
type rateNote struct {
	l                 *rateLimiter
	addrKey, tokenKey string
}

type rateNoteKey struct{}

func rateNoteFrom(ctx context.Context) *rateNote {
	n, _ := ctx.Value(rateNoteKey{}).(*rateNote)
	return n
}

// authFailed charges the address failedAuthCost requests in all (its
// request took one already); the bucket may go into debt, so the address
// waits that much longer. The token, if any, is no longer taken for good.
// Nil does nothing.
func (n *rateNote) authFailed() {
	if n == nil {
		return
	}
	now := n.l.now()
	n.l.mu.Lock()
	defer n.l.mu.Unlock()
	if extra := min(failedAuthCost, n.l.burst) - 1; extra > 0 {
		n.l.entry(n.addrKey, now).lim.ReserveN(now, extra) // kept: the debt is the point
	}
	if n.tokenKey != "" {
		n.l.entry(n.tokenKey, now).good = false
	}
}

// authSucceeded marks the request's token as good: from now on it spends
// only its own budget, not its address's. Nil does nothing.
func (n *rateNote) authSucceeded() {
	if n == nil || n.tokenKey == "" {
		return
	}
	now := n.l.now()
	n.l.mu.Lock()
	defer n.l.mu.Unlock()
	n.l.entry(n.tokenKey, now).good = true
}

// sweep forgets the buckets that have been idle long enough to be full.
func (l *rateLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, e := range l.entries {
		if now.Sub(e.seen) >= l.idle {
			delete(l.entries, k)
		}
	}
}

// shrink drops arbitrary entries down to seven eighths of the bound when the
// map is full of busy callers, so the next new callers do not each pay for
// a full sweep.
func (l *rateLimiter) shrink() {
	for k := range l.entries {
		if len(l.entries) <= l.max*7/8 {
			return
		}
		delete(l.entries, k)
	}
}

func (l *rateLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// rateKeys name r's caller: its remote address, and its token (hashed, so
// the map holds no secret) or "" without one.
func rateKeys(r *http.Request) (addrKey, tokenKey string) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if h := strings.TrimSpace(r.Header.Get("Authorization")); h != "" {
		tokenKey = "token:" + auth.Hash(h)
	}
	return "addr:" + host, tokenKey
}

// withRateLimit answers 429 RATE_LIMITED with Retry-After to a caller over
// its rate. It runs before authentication, so a flood costs no database
// lookup; authentication reports back through the request's rateNote, so a
// failed one costs the address more (see admit). A nil limiter lets
// everything through.
func withRateLimit(l *rateLimiter, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, wait, note := l.admit(rateKeys(r))
		if !ok {
			secs := max(1, int(math.Ceil(wait.Seconds())))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeError(w, r, http.StatusTooManyRequests, ipa.Errorf(CodeRateLimited, "",
				"Too many requests: retry in %d s.", secs))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), rateNoteKey{}, note)))
	})
}
