package supervisor

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// A server that dies (kill -9) while a crashed pod backs off leaves no
// process behind, only the claim on the pod: the supervisor that settles the
// pod next — the same server come back (Reconcile) or another instance
// (TakeOver) — records no loss, spends no attempt, and carries out the
// scheduled restart. The window's accounting goes on from the stream: the
// limit is reached at the same crash as without the server's death.
func TestScheduledRestartSurvivesServerDeath(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, backend string) {
		for _, how := range []string{"Reconcile", "TakeOver"} {
			t.Run(how, func(t *testing.T) {
				w := newDBWorld(t, backend)
				// The first server's back-off never ends: it dies during it.
				never := make(chan time.Time)
				b := setup(t, w.config(func(c *Config) { c.After = func(time.Duration) <-chan time.Time { return never } }))
				pol := ipa.RestartPolicy{AutoRestart: true, MaxAttempts: 2, WindowSeconds: 600, InitialBackoffMs: 20, MaxBackoffMs: 20}
				task := w.createTask(t, pol)
				mustStart(t, b.sup, task)
				w.crash(t, b.sup, task.ID, 1)
				w.waitEvents(t, task.ID, ipa.EventPodRestartScheduled, 1)
				waitState(t, b.sup, task.ID, ipa.PodBackoff)
				b.sup.abandon()

				cfg := b.cfg
				cfg.After = nil // real back-off timers from here on
				s2 := newStarted(t, cfg)
				cur, err := w.db.st().GetTask(context.Background(), task.ID)
				if err != nil {
					t.Fatal(err)
				}
				if cur.PodState != ipa.PodBackoff {
					t.Fatalf("projection after the death: pod %s, want BACKOFF", cur.PodState)
				}
				if how == "Reconcile" {
					if err := s2.Reconcile(context.Background(), []ReconcileTarget{{Task: cur}}); err != nil {
						t.Fatal(err)
					}
				} else {
					leases, err := cfg.Leases.List(context.Background())
					if err != nil || len(leases) != 1 || leases[0].PID != 0 {
						t.Fatalf("leases after the death: %+v, %v; want the claim without a process", leases, err)
					}
					s2.TakeOver(context.Background(), []Takeover{{Lease: leases[0], PreviousOwner: "dead", Epoch: 2, Task: cur}})
				}
				started := w.waitEvents(t, task.ID, ipa.EventPodStarted, 2)
				if d := decode[ipa.PodStartedData](t, started[1]); d.Trigger != ipa.TriggerRestart {
					t.Fatalf("second pod_started %+v, want the scheduled restart", d)
				}
				if st := waitState(t, s2, task.ID, ipa.PodRunning); st.Restarts != 1 {
					t.Fatalf("status after the kept restart: %+v, want 1 restart", st)
				}
				// Crash 2: the last restart the window allows; crash 3: the limit.
				w.crash(t, s2, task.ID, 2)
				w.waitEvents(t, task.ID, ipa.EventPodStarted, 3)
				w.crash(t, s2, task.ID, 3)
				w.waitEvents(t, task.ID, ipa.EventPodRestartLimitReached, 1)
				waitState(t, s2, task.ID, ipa.PodFailed)
				if got := eventTypes(w.podEvents(t, task.ID)); slices.Contains(got, ipa.EventPodLost) {
					t.Fatalf("stream %v: a pod that was backing off was recorded lost", got)
				}
			})
		}
	})
}
