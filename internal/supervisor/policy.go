package supervisor

import (
	"slices"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// restartTracker is the arithmetic of a task's restart policy for one pod:
// which crashes and automatic restarts still count (those inside the
// policy's window), whether the window's limit is spent, and how long to back
// off. It starts no goroutine, does no I/O and reads no clock: every time is
// passed in, so the policy is the same whether the supervisor or a test
// drives it. The policy is passed on each call too, because a task's policy
// may change between two crashes. Not safe for concurrent use (the pod's
// mutex guards it).
type restartTracker struct {
	crashes  []time.Time // crashes inside the window, oldest first: what the limit counts
	restarts []time.Time // automatic restarts, oldest first: Status.Restarts counts those inside the window
}

// restartAction is what the policy says follows a crash.
type restartAction int

const (
	restartOff     restartAction = iota // the policy has no automatic restart: the pod stays CRASHED
	restartFailed                       // the window's limit is spent: the pod is FAILED
	restartBackoff                      // BACKOFF, then a restart after Delay
)

// restartDecision is the policy's answer to one crash.
type restartDecision struct {
	Action  restartAction
	Crashes int           // crashes inside the window, this one included (0 for restartOff)
	Restart int           // restartBackoff: which automatic restart in the window this is, 1 for the first
	Attempt int           // restartBackoff: the attempt number the restart launches (the first launch is 1)
	Delay   time.Duration // restartBackoff: the back-off before it
}

// policyWindow is the span in which pol counts crashes and restarts.
func policyWindow(pol ipa.RestartPolicy) time.Duration {
	return time.Duration(pol.WindowSeconds) * time.Second
}

// crash notes a crash (or a lost pod) at time at, after a run of uptime, and
// decides what follows. With AutoRestart off it notes nothing. A run that
// lasted longer than the window wipes the earlier crashes and restarts: it
// ran well for a whole window. Crashes older than the window are forgotten;
// more than MaxAttempts crashes inside it spend the limit.
func (t *restartTracker) crash(pol ipa.RestartPolicy, at time.Time, uptime time.Duration) restartDecision {
	if !pol.AutoRestart {
		return restartDecision{Action: restartOff}
	}
	window := policyWindow(pol)
	if uptime > window {
		t.reset()
	}
	t.crashes = append(trimBefore(t.crashes, at.Add(-window)), at)
	n := len(t.crashes)
	if n > pol.MaxAttempts {
		return restartDecision{Action: restartFailed, Crashes: n}
	}
	return restartDecision{Action: restartBackoff, Crashes: n, Restart: n, Attempt: n + 1, Delay: backoffDelay(pol, n)}
}

// restarted notes an automatic restart at time at, forgetting the restarts
// that fell out of the window.
func (t *restartTracker) restarted(pol ipa.RestartPolicy, at time.Time) {
	t.restarts = append(trimBefore(t.restarts, at.Add(-policyWindow(pol))), at)
}

// unrestarted takes back the restart noted at time at: it could not even be
// recorded (the store was unreachable), so it spent no attempt.
func (t *restartTracker) unrestarted(at time.Time) {
	if n := len(t.restarts); n > 0 && t.restarts[n-1].Equal(at) {
		t.restarts = t.restarts[:n-1]
	}
}

// restartsInWindow counts the automatic restarts inside the window that ends
// at now (a restart exactly at its start still counts).
func (t *restartTracker) restartsInWindow(pol ipa.RestartPolicy, now time.Time) int {
	cutoff := now.Add(-policyWindow(pol))
	n := 0
	for _, at := range t.restarts {
		if !at.Before(cutoff) {
			n++
		}
	}
	return n
}

// reset forgets every crash and restart: a person started the pod, or the
// task is gone.
func (t *restartTracker) reset() {
	t.crashes, t.restarts = nil, nil
}

// empty reports whether the tracker holds no crash and no restart.
func (t *restartTracker) empty() bool { return len(t.crashes) == 0 && len(t.restarts) == 0 }

// podFact is one recorded event the restart accounting counts.
type podFact struct {
	Kind   factKind
	At     time.Time
	Uptime time.Duration // factCrash: how long the run lasted (0 when unknown)
}

type factKind int

const (
	factCrash   factKind = iota // pod_crashed, pod_lost: a crash
	factRestart                 // an automatic restart (pod_started by the policy, or one that failed to start)
	factReset                   // a person started the pod: earlier crashes and restarts stop counting
)

// replay notes recorded facts, oldest first, as they were noted when they
// happened: after it the tracker is what it would be had the supervisor that
// recorded them never stopped.
func (t *restartTracker) replay(pol ipa.RestartPolicy, facts []podFact) {
	for _, f := range facts {
		switch f.Kind {
		case factReset:
			t.reset()
		case factRestart:
			t.restarted(pol, f.At)
		case factCrash:
			t.crash(pol, f.At, f.Uptime)
		}
	}
}

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
