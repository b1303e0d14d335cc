package supervisor

import (
	"slices"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// trimBefore drops the times before cutoff from a sorted slice.
func trimBefore(ts []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(ts) && ts[i].Before(cutoff) {
		i++
	}
	return slices.Delete(ts, 0, i)
}

// backoffDelay is InitialBackoffMs doubled for each earlier crash in the
// window (n is the crash count including this one), capped at MaxBackoffMs.
func backoffDelay(pol ipa.RestartPolicy, n int) time.Duration {
	d := time.Duration(pol.InitialBackoffMs) * time.Millisecond
	max := time.Duration(pol.MaxBackoffMs) * time.Millisecond
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}
