package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// TestPodQueries: activePods' query and the resume query, on every dialect.
func TestPodQueries(t *testing.T) {
	t.Parallel()
	for _, d := range dialects() {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := d.open(t)
			ctx := context.Background()
			add := func(id string, evs ...ipa.NewEvent) {
				t.Helper()
				_, err := s.Append(ctx, ipa.AppendRequest{TaskID: id, ExpectedVersion: ipa.AnyVersion, Now: t0.Add(time.Second),
					Decide: func(*ipa.Task) ([]ipa.NewEvent, error) { return evs, nil }})
				require.NoError(t, err)
			}
			started := ipa.NewEvent{Type: ipa.EventPodStarted, Data: ipa.PodStartedData{PID: 1, Trigger: ipa.TriggerManual}}
			shutdown := func(instance string) ipa.NewEvent {
				return ipa.NewEvent{Type: ipa.EventPodStopped, Data: ipa.PodStoppedData{Reason: ipa.StopShutdown, InstanceID: instance}}
			}
			crashed := ipa.NewEvent{Type: ipa.EventPodCrashed, Data: ipa.PodCrashedData{Reason: ipa.CrashSignal}}

			running := createTask(t, s, "running", t0)
			add(running.ID, started)
			backoff := createTask(t, s, "backoff", t0)
			add(backoff.ID, started, crashed, ipa.NewEvent{Type: ipa.EventPodRestartScheduled, Data: ipa.PodRestartScheduledData{Attempt: 1}})
			crashedT := createTask(t, s, "crashed", t0)
			add(crashedT.ID, started, crashed)
			ours := createTask(t, s, "stopped by our shutdown", t0)
			add(ours.ID, started, shutdown("node-a"), ipa.NewEvent{Type: ipa.EventPhaseChanged, Data: ipa.PhaseChangedData{From: ipa.PhaseSpecClarification, To: ipa.PhasePlanning}})
			theirs := createTask(t, s, "stopped by another's shutdown", t0)
			add(theirs.ID, started, shutdown("node-b"))
			restartedSince := createTask(t, s, "started and stopped by a person since", t0)
			add(restartedSince.ID, started, shutdown("node-a"), started, ipa.NewEvent{Type: ipa.EventPodStopped, Data: ipa.PodStoppedData{Reason: "not now"}})
			runningSince := createTask(t, s, "running again", t0)
			add(runningSince.ID, started, shutdown("node-a"), started)
			closed := createTask(t, s, "closed", t0)
			add(closed.ID, started, shutdown("node-a"), ipa.NewEvent{Type: ipa.EventTaskCancelled, Data: ipa.TaskCancelledData{Reason: "x"}})
			createTask(t, s, "never started", t0)

			ids := func(ts []*ipa.Task) []string {
				var out []string
				for _, t := range ts {
					out = append(out, t.ID)
				}
				slices.Sort(out)
				return out
			}
			sorted := func(v ...string) []string { slices.Sort(v); return v }

			active, err := s.ActivePodTasks(ctx)
			require.NoError(t, err)
			require.Equal(t, sorted(running.ID, backoff.ID, runningSince.ID), ids(active))

			resume, err := s.ShutdownStoppedTasks(ctx, "node-a")
			require.NoError(t, err)
			require.Equal(t, []string{ours.ID}, ids(resume))
			require.Equal(t, ipa.PhasePlanning, resume[0].Phase, "the whole row is read")
			resume, err = s.ShutdownStoppedTasks(ctx, "node-c")
			require.NoError(t, err)
			require.Empty(t, resume)
			resume, err = s.ShutdownStoppedTasks(ctx, "node-c", "node-b", "node-a")
			require.NoError(t, err)
			require.Equal(t, sorted(ours.ID, theirs.ID), ids(resume), "a server's former ids count as its own")

			withPods, err := s.TasksWithPods(ctx)
			require.NoError(t, err)
			require.Equal(t, sorted(running.ID, backoff.ID, crashedT.ID, runningSince.ID), ids(withPods))
		})
	}
}
