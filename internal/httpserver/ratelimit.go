package httpserver

import (
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
}

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

// rateKey names r's caller: its token (hashed, so the map holds no secret)
// or, without one, its remote address.
func rateKey(r *http.Request) string {
	if h := strings.TrimSpace(r.Header.Get("Authorization")); h != "" {
		return "token:" + auth.Hash(h)
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "addr:" + host
}

// withRateLimit answers 429 RATE_LIMITED with Retry-After to a caller over
// its rate. It runs before authentication, so a flood costs no database
// lookup. A nil limiter lets everything through.
func withRateLimit(l *rateLimiter, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, wait := l.allow(rateKey(r))
		if !ok {
			secs := max(1, int(math.Ceil(wait.Seconds())))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeError(w, r, http.StatusTooManyRequests, ipa.Errorf(CodeRateLimited, "",
				"Too many requests: retry in %d s.", secs))
			return
		}
		next.ServeHTTP(w, r)
	})
}
