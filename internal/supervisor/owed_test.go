package supervisor

import (
	"context"
	"encoding/json"
	"os/exec"
	"syscall"
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

// A lease whose run has no pod_started (its server saved the lease, then
// died before recording the start) is settled without inventing history:
// the run's process, still alive, is killed, no pod_reattached or pod_lost
// is recorded for a start the stream never saw, and the lease is gone.
func TestReconcileLeaseOfUnrecordedStart(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	// The stream records an earlier run (another pid) and its crash only.
	earlier, _ := json.Marshal(ipa.PodStartedData{PID: 1, Attempt: 0, Runtime: "test", Trigger: ipa.TriggerManual})
	crashed, _ := json.Marshal(ipa.PodCrashedData{PID: 1, Runtime: "test", Reason: ipa.CrashSignal, Signal: "SIGKILL"})
	hist := historyOf{
		{Type: ipa.EventPodStarted, Data: earlier, OccurredAt: clock.Now().Add(-time.Minute)},
		{Type: ipa.EventPodCrashed, Data: crashed, OccurredAt: clock.Now().Add(-50 * time.Second)},
	}
	b := setup(t, func(c *Config) { c.Now, c.After, c.History = clock.Now, clock.After, hist })
	ctx := context.Background()

	orphan := exec.Command("sleep", "60")
	orphan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- orphan.Wait() }()
	t.Cleanup(func() { _ = orphan.Process.Kill() })
	ticks, err := procStartTicks(orphan.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	task := newTask("", ipa.RestartPolicy{})
	task.PodState = ipa.PodCrashed
	_ = b.leases.Save(ctx, Lease{TaskID: task.ID, Runtime: "test", PID: orphan.Process.Pid, StartTicks: ticks, BootID: bootID(),
		StartedAt: clock.Now(), Network: "unix", Addr: "/nonexistent", Protocol: "grpc"})
	if err := b.sup.Reconcile(ctx, []ReconcileTarget{{task}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the unrecorded run's process is still alive")
	}
	if got := b.rec.types(task.ID); len(got) != 0 {
		t.Fatalf("events %v, want none for a start the stream never recorded", got)
	}
	if ls, _ := b.leases.List(ctx); len(ls) != 0 {
		t.Fatalf("leases = %+v, want the unrecorded run's lease dropped", ls)
	}
}
