package supervisor

import (
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// historyOf is a History that returns fixed events.
type historyOf []ipa.Event

func (h historyOf) RecentPodEvents(context.Context, string, time.Time) ([]ipa.Event, error) {
	return h, nil
}

// A pod whose crash is recorded but whose restart decision is not (the
// server died while that decision waited for the database) is restarted by
// the next server as its policy says, counting that crash once; a crashed
// pod without automatic restart stays CRASHED.
func TestReconcileRestartsOwedRestart(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	pol := ipa.RestartPolicy{AutoRestart: true, MaxAttempts: 3, WindowSeconds: 60, InitialBackoffMs: 100, MaxBackoffMs: 1000}
	crashed, _ := json.Marshal(ipa.PodCrashedData{PID: 1234, Attempt: 1, Runtime: "test", Reason: ipa.CrashSignal, Signal: "SIGKILL", UptimeMs: 50})
	started, _ := json.Marshal(ipa.PodStartedData{PID: 1234, Attempt: 1, Runtime: "test", Trigger: ipa.TriggerManual})
	hist := historyOf{
		{Type: ipa.EventPodStarted, Data: started, OccurredAt: clock.Now().Add(-time.Second)},
		{Type: ipa.EventPodCrashed, Data: crashed, OccurredAt: clock.Now().Add(-500 * time.Millisecond)},
	}
	b := setup(t, func(c *Config) { c.Now, c.After, c.History = clock.Now, clock.After, hist })

	owed := newTask("", pol)
	owed.PodState = ipa.PodCrashed
	off := newTask("", ipa.RestartPolicy{})
	off.PodState = ipa.PodCrashed
	if err := b.sup.Reconcile(context.Background(), []ReconcileTarget{{owed}, {off}}); err != nil {
		t.Fatal(err)
	}
	sched := decode[ipa.PodRestartScheduledData](t, b.rec.wait(t, owed.ID, ipa.EventPodRestartScheduled, 1))
	if sched.Attempt != 1 || sched.DelayMs != 100 {
		t.Fatalf("pod_restart_scheduled %+v, want the first restart after 100ms (the recorded crash counted once)", sched)
	}
	waitState(t, b.sup, owed.ID, ipa.PodBackoff)
	clock.fire(t, 1)
	st := decode[ipa.PodStartedData](t, b.rec.wait(t, owed.ID, ipa.EventPodStarted, 1))
	if st.Trigger != ipa.TriggerRestart {
		t.Fatalf("pod_started %+v, want trigger restart", st)
	}
	waitState(t, b.sup, owed.ID, ipa.PodRunning)
	if got := b.rec.types(owed.ID); len(got) != 2 {
		t.Fatalf("events of the owed pod %v, want pod_restart_scheduled and pod_started only", got)
	}
	if got := b.rec.types(off.ID); len(got) != 0 {
		t.Fatalf("events of the pod without auto restart %v, want none", got)
	}
	if s := b.sup.Status(off.ID); s.State == ipa.PodBackoff || s.State == ipa.PodRunning {
		t.Fatalf("pod without auto restart: %+v", s)
	}
}

// A lease left behind by a run whose end is recorded (its deletion failed
// while the database was unreachable) is dropped without a second end for
// that run: the task is settled as one without a lease.
func TestReconcileStaleLeaseOfEndedRun(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	pol := ipa.RestartPolicy{AutoRestart: true, MaxAttempts: 3, WindowSeconds: 60, InitialBackoffMs: 100, MaxBackoffMs: 1000}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	pid := dead.Process.Pid
	crashed, _ := json.Marshal(ipa.PodCrashedData{PID: pid, Attempt: 1, Runtime: "test", Reason: ipa.CrashSignal, Signal: "SIGKILL", UptimeMs: 50})
	started, _ := json.Marshal(ipa.PodStartedData{PID: pid, Attempt: 1, Runtime: "test", Trigger: ipa.TriggerManual})
	hist := historyOf{
		{Type: ipa.EventPodStarted, Data: started, OccurredAt: clock.Now().Add(-time.Second)},
		{Type: ipa.EventPodCrashed, Data: crashed, OccurredAt: clock.Now().Add(-500 * time.Millisecond)},
	}
	b := setup(t, func(c *Config) { c.Now, c.After, c.History = clock.Now, clock.After, hist })
	ctx := context.Background()

	// The crash is recorded, its restart decision is not.
	task := newTask("", pol)
	task.PodState = ipa.PodCrashed
	_ = b.leases.Save(ctx, Lease{TaskID: task.ID, Runtime: "test", PID: pid, StartTicks: 1, StartedAt: clock.Now().Add(-time.Second),
		Network: "unix", Addr: "/nonexistent", Protocol: "grpc"})
	if err := b.sup.Reconcile(ctx, []ReconcileTarget{{task}}); err != nil {
		t.Fatal(err)
	}
	b.rec.wait(t, task.ID, ipa.EventPodRestartScheduled, 1)
	if got := b.rec.types(task.ID); len(got) != 1 {
		t.Fatalf("events %v, want pod_restart_scheduled alone (no pod_lost for a run whose crash is recorded)", got)
	}
	// The pending restart holds a claim of its own (no process yet); the
	// stale lease of the ended run is gone.
	if ls, _ := b.leases.List(ctx); len(ls) != 1 || ls[0].PID != 0 {
		t.Fatalf("leases = %+v, want the stale one dropped and the pending restart's claim kept", ls)
	}
}
