package auth

import (
	"sync"

	"golang.org/x/time/rate"
)

// A flood of bad credentials must not become a flood of log lines: the
// audit log keeps failedAuthLogBurst failures at once and
// failedAuthLogPerSecond after that; the next line written says how many
// were left out ("suppressed").
const (
	failedAuthLogPerSecond = 5
	failedAuthLogBurst     = 20
)

type logLimit struct {
	lim *rate.Limiter

	mu         sync.Mutex
	suppressed int
}

func newLogLimit() *logLimit {
	return &logLimit{lim: rate.NewLimiter(failedAuthLogPerSecond, failedAuthLogBurst)}
}

// allow reports whether a line may be written now and, when it may, how
// many were left out since the last one.
func (l *logLimit) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.lim.Allow() {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.suppressed = 0
	return true, n
}
