package service

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// leaseTable is the pod leases of several instances.
type leaseTable map[string][2]string // task id → owner, lease JSON

func (l leaseTable) PodLease(_ context.Context, taskID string) (string, []byte, bool, error) {
	r, ok := l[taskID]
	if !ok {
		return "", nil, false, nil
	}
	return r[0], []byte(r[1]), true, nil
}

// An instance that does not own a pod answers it from the store — never
// from what its own supervisor remembers — and the owner from its live
// view; the restarts counted from the stream are the owner's: automatic
// restarts (and automatic starts that failed) back to the last manual start.
func TestPodViewAcrossInstances(t *testing.T) {
	f := newFixture(t)
	task := f.create(t)
	f.log.mu.Lock()
	f.log.now = time.Now() // the window ends now
	f.log.mu.Unlock()
	for _, ev := range []struct {
		typ  string
		data any
	}{
		{ipa.EventPodStarted, ipa.PodStartedData{Trigger: ipa.TriggerRestart}}, // before the manual start: not counted
		{ipa.EventPodStarted, ipa.PodStartedData{Trigger: ipa.TriggerManual}},
		{ipa.EventPodCrashed, ipa.PodCrashedData{Reason: "exited"}},
		{ipa.EventPodStarted, ipa.PodStartedData{Trigger: ipa.TriggerRestart}},
		{ipa.EventPodCrashed, ipa.PodCrashedData{Reason: ipa.CrashStartFailed}},
		{ipa.EventPodStarted, ipa.PodStartedData{Trigger: ipa.TriggerTakeover}},
		{ipa.EventPodStarted, ipa.PodStartedData{Trigger: ipa.TriggerRestart}},
	} {
		f.pods.recordData(task.ID, ev.typ, ev.data)
	}
	// This instance ran the pod once: its supervisor still says RUNNING, pid 4242.
	f.pods.running[task.ID] = true
	started := time.Date(2026, 12, 7, 23, 0, 0, 0, time.UTC)
	leases := leaseTable{task.ID: {"other", `{"taskId":"` + task.ID + `","pid":777,"startedAt":"` + started.Format(time.RFC3339Nano) + `"}`}}
	f.podS.ShareWith("me", leases, ipa.DefaultRestartPolicy())

	cur, err := f.log.GetTask(context.Background(), task.ID)
	require.NoError(t, err)
	cur.RestartPolicy = ipa.RestartPolicy{AutoRestart: true, MaxAttempts: 10, WindowSeconds: 600, InitialBackoffMs: 100, MaxBackoffMs: 200}

	v := f.podS.Pod(context.Background(), cur)
	require.Equal(t, ipa.PodRunning, v.State)
	require.NotNil(t, v.PID)
	require.Equal(t, 777, *v.PID, "the owner's pid, not this instance's memory")
	require.NotNil(t, v.StartedAt)
	require.True(t, started.Equal(*v.StartedAt))
	require.Equal(t, 3, v.Restarts)

	// Outside the window nothing counts.
	old := *cur
	old.RestartPolicy.WindowSeconds = 1
	time.Sleep(1100 * time.Millisecond)
	require.Equal(t, 0, f.podS.Pod(context.Background(), &old).Restarts)

	// A paused pod lives on under its lease: the owner's pid and start time.
	paused := *cur
	paused.PodState = ipa.PodPaused
	v = f.podS.Pod(context.Background(), &paused)
	require.Equal(t, ipa.PodPaused, v.State)
	require.NotNil(t, v.PID)
	require.Equal(t, 777, *v.PID)
	require.NotNil(t, v.StartedAt)
	require.True(t, started.Equal(*v.StartedAt))

	// The owner answers from its supervisor.
	leases[task.ID] = [2]string{"me", leases[task.ID][1]}
	v = f.podS.Pod(context.Background(), cur)
	require.Equal(t, 4242, *v.PID)

	// No lease anywhere: the stream's state, no pid.
	delete(leases, task.ID)
	stopped := *cur
	stopped.PodState = ipa.PodCrashed
	v = f.podS.Pod(context.Background(), &stopped)
	require.Equal(t, ipa.PodCrashed, v.State)
	require.Nil(t, v.PID)
}
