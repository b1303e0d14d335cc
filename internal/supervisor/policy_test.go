package supervisor

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// The restart policy's arithmetic, driven by a fake clock: no process, no
// timer, no database.

func autoPolicy(maxAttempts, windowSeconds, initialMs, maxMs int) ipa.RestartPolicy {
	return ipa.RestartPolicy{AutoRestart: true, MaxAttempts: maxAttempts, WindowSeconds: windowSeconds, InitialBackoffMs: initialMs, MaxBackoffMs: maxMs}
}

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		pol  ipa.RestartPolicy
		want []time.Duration // for n = 1, 2, ...
	}{
		{"doubles then caps", autoPolicy(10, 60, 100, 1000), []time.Duration{100, 200, 400, 800, 1000, 1000}},
		{"cap between two doublings", autoPolicy(10, 60, 1000, 3000), []time.Duration{1000, 2000, 3000, 3000}},
		{"initial equals cap", autoPolicy(10, 60, 500, 500), []time.Duration{500, 500, 500}},
		{"initial above cap", autoPolicy(10, 60, 800, 500), []time.Duration{500, 500}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i, w := range tc.want {
				if got := backoffDelay(tc.pol, i+1); got != w*time.Millisecond {
					t.Errorf("n=%d: %v, want %v", i+1, got, w*time.Millisecond)
				}
			}
		})
	}
	// A long crash streak stops doubling at the cap instead of overflowing.
	pol := autoPolicy(100, 86400, 1, 30000)
	if got := backoffDelay(pol, 1000); got != 30*time.Second {
		t.Fatalf("n=1000: %v, want 30s", got)
	}
}

func TestRestartTrackerBacksOffUntilLimit(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	pol := autoPolicy(3, 60, 1000, 3000)
	var tr restartTracker
	want := []restartDecision{
		{Action: restartBackoff, Crashes: 1, Restart: 1, Attempt: 2, Delay: time.Second},
		{Action: restartBackoff, Crashes: 2, Restart: 2, Attempt: 3, Delay: 2 * time.Second},
		{Action: restartBackoff, Crashes: 3, Restart: 3, Attempt: 4, Delay: 3 * time.Second},
		{Action: restartFailed, Crashes: 4}, // more than MaxAttempts in the window
		{Action: restartFailed, Crashes: 5}, // and it stays spent
	}
	for i, w := range want {
		if got := tr.crash(pol, clock.Now(), time.Second); got != w {
			t.Fatalf("crash %d: %+v, want %+v", i+1, got, w)
		}
		if w.Action == restartBackoff {
			clock.Advance(w.Delay)
			tr.restarted(pol, clock.Now())
		}
		clock.Advance(time.Second)
	}
	if n := tr.restartsInWindow(pol, clock.Now()); n != 3 {
		t.Fatalf("restarts in window = %d, want 3", n)
	}
}

func TestRestartTrackerZeroAttemptsFailsAtOnce(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	var tr restartTracker
	if got := tr.crash(autoPolicy(0, 60, 1000, 3000), clock.Now(), 0); got.Action != restartFailed || got.Crashes != 1 {
		t.Fatalf("decision = %+v, want FAILED after 1 crash", got)
	}
}

func TestRestartTrackerWindowExpiry(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	pol := autoPolicy(2, 60, 1000, 30000)
	var tr restartTracker

	// Two crashes 50s apart count together...
	if d := tr.crash(pol, clock.Now(), 0); d.Crashes != 1 || d.Delay != time.Second {
		t.Fatalf("crash 1: %+v", d)
	}
	clock.Advance(50 * time.Second)
	if d := tr.crash(pol, clock.Now(), 0); d.Crashes != 2 || d.Delay != 2*time.Second {
		t.Fatalf("crash 2: %+v", d)
	}
	// ...a third 61s after the first leaves the first behind: two in the
	// window, so the limit of 2 is not spent.
	clock.Advance(11 * time.Second)
	d := tr.crash(pol, clock.Now(), 0)
	if d.Action != restartBackoff || d.Crashes != 2 || d.Attempt != 3 || d.Delay != 2*time.Second {
		t.Fatalf("crash 3: %+v, want the second restart in the window", d)
	}
	// A crash exactly one window after the second one still counts it (the
	// window's start is inside the window): three in the window, FAILED.
	clock.Advance(49 * time.Second)
	if d := tr.crash(pol, clock.Now(), 0); d.Action != restartFailed || d.Crashes != 3 {
		t.Fatalf("crash 4: %+v, want FAILED", d)
	}
	// After a quiet window the count starts over, and so does the back-off.
	clock.Advance(61 * time.Second)
	if d := tr.crash(pol, clock.Now(), 0); d.Action != restartBackoff || d.Crashes != 1 || d.Attempt != 2 || d.Delay != time.Second {
		t.Fatalf("crash after a quiet window: %+v", d)
	}
}

func TestRestartTrackerLongRunForgetsHistory(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	pol := autoPolicy(2, 60, 1000, 30000)
	var tr restartTracker
	tr.crash(pol, clock.Now(), 0)
	tr.restarted(pol, clock.Now())
	clock.Advance(time.Second)

	// A run of exactly one window is not "longer than the window".
	if d := tr.crash(pol, clock.Now(), 60*time.Second); d.Crashes != 2 {
		t.Fatalf("crash after a 60s run: %+v, want 2 crashes", d)
	}
	tr.restarted(pol, clock.Now())
	clock.Advance(time.Second)
	if n := tr.restartsInWindow(pol, clock.Now()); n != 2 {
		t.Fatalf("restarts = %d, want 2", n)
	}
	// A run longer than the window wipes earlier crashes and restarts, even
	// those still inside the window.
	d := tr.crash(pol, clock.Now(), 61*time.Second)
	if d.Action != restartBackoff || d.Crashes != 1 || d.Delay != time.Second {
		t.Fatalf("crash after a 61s run: %+v, want a first crash", d)
	}
	if n := tr.restartsInWindow(pol, clock.Now()); n != 0 {
		t.Fatalf("restarts = %d after a long run, want 0", n)
	}
}

func TestRestartTrackerCountsRestartsInsideWindowOnly(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	pol := autoPolicy(10, 60, 1000, 30000)
	var tr restartTracker
	first := clock.Now()
	tr.restarted(pol, first)
	clock.Advance(30 * time.Second)
	tr.restarted(pol, clock.Now())

	for _, tc := range []struct {
		at   time.Duration // after the first restart
		want int
	}{
		{30 * time.Second, 2},
		{60 * time.Second, 2}, // the first is exactly at the window's start
		{61 * time.Second, 1},
		{90 * time.Second, 1},
		{91 * time.Second, 0},
	} {
		if n := tr.restartsInWindow(pol, first.Add(tc.at)); n != tc.want {
			t.Errorf("at +%v: %d restarts, want %d", tc.at, n, tc.want)
		}
	}
	// Noting a restart drops the ones that fell out of the window, so the
	// history stays bounded by what the window can hold.
	tr.restarted(pol, first.Add(100*time.Second))
	if len(tr.restarts) != 1 {
		t.Fatalf("kept %d restart times, want 1", len(tr.restarts))
	}
	// A shorter window (the task's policy changed) counts fewer.
	if n := tr.restartsInWindow(autoPolicy(10, 1, 1000, 30000), first.Add(102*time.Second)); n != 0 {
		t.Fatalf("1s window: %d restarts, want 0", n)
	}
}

func TestRestartTrackerPolicyOffNotesNothing(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	pol := autoPolicy(1, 60, 1000, 30000)
	var tr restartTracker
	off := pol
	off.AutoRestart = false
	for range 3 {
		if d := tr.crash(off, clock.Now(), 0); d != (restartDecision{Action: restartOff}) {
			t.Fatalf("policy off: %+v", d)
		}
	}
	// Crashes while the policy was off do not count once it is on.
	if d := tr.crash(pol, clock.Now(), 0); d.Action != restartBackoff || d.Crashes != 1 {
		t.Fatalf("first crash with the policy on: %+v", d)
	}
}

func TestRestartTrackerReset(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	pol := autoPolicy(1, 60, 1000, 30000)
	var tr restartTracker
	tr.crash(pol, clock.Now(), 0)
	tr.restarted(pol, clock.Now())
	if d := tr.crash(pol, clock.Now(), 0); d.Action != restartFailed {
		t.Fatalf("second crash: %+v, want FAILED", d)
	}
	// A person starts the pod again: the limit and the counter start over.
	tr.reset()
	if n := tr.restartsInWindow(pol, clock.Now()); n != 0 {
		t.Fatalf("restarts after reset = %d", n)
	}
	if d := tr.crash(pol, clock.Now(), 0); d.Action != restartBackoff || d.Crashes != 1 {
		t.Fatalf("crash after reset: %+v", d)
	}
}

// Replaying the recorded facts of a crash loop (as a new server does) gives
// the tracker the supervisor that lived through it had: same crashes, same
// restarts, same next decision; a person's start and a long run reset it,
// and facts outside the window age out.
func TestRestartTrackerReplay(t *testing.T) {
	t.Parallel()
	pol := autoPolicy(3, 60, 100, 1000)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	ev := func(typ string, s int, data any) ipa.Event {
		b, _ := json.Marshal(data)
		return ipa.Event{Type: typ, OccurredAt: at(s), Data: b}
	}
	crashed := func(s int, uptimeMs int64) ipa.Event {
		return ev(ipa.EventPodCrashed, s, ipa.PodCrashedData{Reason: ipa.CrashSignal, UptimeMs: uptimeMs})
	}
	started := func(s int, trigger string) ipa.Event {
		return ev(ipa.EventPodStarted, s, ipa.PodStartedData{Trigger: trigger})
	}

	// What the live tracker noted: crash at 10, restart at 11, crash at 20,
	// a failed restart at 21, restart at 31, crash at 40.
	var live restartTracker
	live.crash(pol, at(10), time.Second)
	live.restarted(pol, at(11))
	live.crash(pol, at(20), time.Second)
	live.restarted(pol, at(21))
	live.crash(pol, at(21), 0)
	live.restarted(pol, at(31))
	live.crash(pol, at(40), time.Second)

	var seeded restartTracker
	seeded.replay(pol, podFacts([]ipa.Event{
		started(0, "manual"), crashed(10, 1000), started(11, "restart"), crashed(20, 1000),
		ev(ipa.EventPodCrashed, 21, ipa.PodCrashedData{Reason: ipa.CrashStartFailed}),
		started(31, "restart"), ev(ipa.EventPodLost, 35, ipa.PodLostData{Reason: ipa.LostNotActive}), crashed(40, 1000),
	}))
	if !slices.Equal(seeded.crashes, live.crashes) || !slices.Equal(seeded.restarts, live.restarts) {
		t.Fatalf("replayed %+v, lived %+v", seeded, live)
	}
	if got, want := seeded.restartsInWindow(pol, at(41)), 3; got != want {
		t.Fatalf("restarts in window = %d, want %d", got, want)
	}
	// Four crashes in the window: the next one spends the limit either way.
	if d := seeded.crash(pol, at(45), 0); d.Action != restartFailed {
		t.Fatalf("next crash = %+v, want the limit", d)
	}

	var reset restartTracker
	reset.replay(pol, podFacts([]ipa.Event{crashed(10, 1000), started(11, "restart"), started(15, "manual"), crashed(20, 1000)}))
	if len(reset.crashes) != 1 || len(reset.restarts) != 0 {
		t.Fatalf("after a manual start: %+v", reset)
	}
	var long restartTracker
	long.replay(pol, podFacts([]ipa.Event{crashed(10, 1000), started(11, "restart"), ev(ipa.EventPodLost, 30, ipa.PodLostData{Reason: ipa.LostProcessGone}), crashed(200, 120000)}))
	if len(long.crashes) != 1 || len(long.restarts) != 0 {
		t.Fatalf("after a run longer than the window: %+v", long)
	}
}
