package httpserver

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRateLimiterOff(t *testing.T) {
	require.Nil(t, newRateLimiter(0, 10))
}

func TestRateLimiterBounded(t *testing.T) {
	l := newRateLimiter(1, 2)
	l.max = 100
	now := time.Unix(1_700_000_000, 0)
	l.now = func() time.Time { return now }

	ok, _ := l.allow("a")
	require.True(t, ok)
	ok, _ = l.allow("a")
	require.True(t, ok)
	ok, wait := l.allow("a")
	require.False(t, ok)
	require.InDelta(t, time.Second, wait, float64(10*time.Millisecond))

	// A flood of new callers, all busy: the map stays within its bound.
	for i := range 10_000 {
		l.allow(fmt.Sprint("flood", i))
		require.LessOrEqual(t, l.size(), l.max)
	}

	// Idle callers are forgotten once their bucket would be full again.
	now = now.Add(l.idle)
	l.allow("b")
	require.Equal(t, 1, l.size())
	ok, _ = l.allow("a")
	require.True(t, ok, "a forgotten caller starts with a full bucket")
}
