package manager

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// PodController starts, stops and watches pods: the supervisor, seen from the
// manager. It records pod lifecycle events through RecordPodEvent.
type PodController interface {
	// StartPod starts the task's pod unless one runs; started is false when
	// one already ran. causationID names the event that caused the start.
	StartPod(ctx context.Context, t *ipa.Task, causationID string) (started bool, err error)
	// StopPod stops the pod gracefully; ipa.ErrPodNotRunning when none runs.
	StopPod(ctx context.Context, taskID, reason string) error
	// RestartPod stops the pod if it runs, then starts it, clearing FAILED.
	RestartPod(ctx context.Context, t *ipa.Task) error
	// Status answers from memory, never calling into the pod.
	Status(taskID string) ipa.PodStatus
	// Forget drops what is kept in memory about a closed task.
	Forget(taskID string)
}

func podsUnavailable() error {
	return ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed, "Pods are not available on this server.")
}

func isNotRunning(err error) bool { return errors.Is(err, ipa.ErrPodNotRunning) }

// Pod returns the pod view of a task: the supervisor's live view when it holds
// one, else the state recorded in the task's stream.
func (m *Manager) Pod(t *ipa.Task) *ipa.Pod {
	v := &ipa.Pod{TaskID: t.ID, State: t.PodState}
	if v.State == "" {
		v.State = ipa.PodStopped
	}
	if pods := m.podController(); pods != nil {
		if s := pods.Status(t.ID); s.Known {
			v.State, v.StartedAt, v.Restarts, v.NextAttemptAt = s.State, s.StartedAt, s.Restarts, s.NextAttemptAt
			if s.PID > 0 {
				pid := s.PID
				v.PID = &pid
			}
			if s.State == ipa.PodRunning {
				v.Live = s.Live
			}
		}
	}
	return v
}

// Crashes returns the task's last recorded crashes, newest first, from its
// pod_crashed events. Requires VIEWER.
func (m *Manager) Crashes(ctx context.Context, taskID string, last int) ([]ipa.PodCrash, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	if last < 1 || last > MaxPageSize {
		return nil, invalidArg("last must be between 1 and %d.", MaxPageSize)
	}
	evs, err := m.store.ReadEvents(ctx, ipa.EventQuery{TaskID: taskID, Types: []string{ipa.EventPodCrashed}, Limit: last, Newest: true})
	if err != nil {
		return nil, err
	}
	out := make([]ipa.PodCrash, 0, len(evs))
	for _, e := range evs {
		var d ipa.PodCrashedData
		_ = json.Unmarshal(e.Data, &d)
		out = append(out, ipa.PodCrash{At: e.OccurredAt, ExitCode: d.ExitCode, Signal: d.Signal, Reason: d.Reason, UptimeMs: d.UptimeMs})
	}
	return out, nil
}

// ActivePods returns the tasks whose pod is not STOPPED. Requires VIEWER.
func (m *Manager) ActivePods(ctx context.Context) ([]*ipa.Task, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	return m.store.TasksWithPods(ctx)
}

// StartPod starts the task's pod unless one runs. Requires OPERATOR. Returns
// ENOTFOUND, ECONFLICT (closed, VERSION_CONFLICT), EUNAVAILABLE
// (RUNTIME_FAILED) when the runtime cannot start.
func (m *Manager) StartPod(ctx context.Context, taskID string, expected *int64) (*ipa.Task, bool, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleOperator); err != nil {
		return nil, false, err
	}
	return m.startPod(ctx, taskID, expected, "")
}

func (m *Manager) startPod(ctx context.Context, taskID string, expected *int64, causation string) (*ipa.Task, bool, error) {
	t, err := m.openTask(ctx, taskID, expected)
	if err != nil {
		return nil, false, err
	}
	pods := m.podController()
	if pods == nil {
		return nil, false, podsUnavailable()
	}
	started, err := pods.StartPod(ctx, t, causation)
	if err != nil {
		return nil, false, err
	}
	t, err = m.store.GetTask(ctx, taskID)
	return t, started, err
}

// StopPod stops the task's pod. Requires OPERATOR. Returns ENOTFOUND,
// ECONFLICT (NOT_RUNNING, closed, VERSION_CONFLICT).
func (m *Manager) StopPod(ctx context.Context, taskID string, reason *string, expected *int64) (*ipa.Task, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleOperator); err != nil {
		return nil, err
	}
	why, err := optionalText("reason", reason)
	if err != nil {
		return nil, err
	}
	if why == "" {
		why = "stopped by request"
	}
	t, err := m.openTask(ctx, taskID, expected)
	if err != nil {
		return nil, err
	}
	notRunning := ipa.Errorf(ipa.ECONFLICT, ipa.ReasonNotRunning, "No pod runs for this task.")
	pods := m.podController()
	if pods == nil {
		if t.PodState == ipa.PodRunning || t.PodState == ipa.PodStarting || t.PodState == ipa.PodBackoff {
			return nil, podsUnavailable()
		}
		return nil, notRunning
	}
	if err := pods.StopPod(ctx, taskID, why); err != nil {
		if isNotRunning(err) {
			return nil, notRunning
		}
		return nil, err
	}
	return m.store.GetTask(ctx, taskID)
}

// RestartPod stops the pod if it runs, then starts it, clearing FAILED.
// Requires OPERATOR. Returns ENOTFOUND, ECONFLICT (closed, VERSION_CONFLICT),
// EUNAVAILABLE (RUNTIME_FAILED).
func (m *Manager) RestartPod(ctx context.Context, taskID string, expected *int64) (*ipa.Task, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleOperator); err != nil {
		return nil, err
	}
	t, err := m.openTask(ctx, taskID, expected)
	if err != nil {
		return nil, err
	}
	pods := m.podController()
	if pods == nil {
		return nil, podsUnavailable()
	}
	if err := pods.RestartPod(ctx, t); err != nil {
		return nil, err
	}
	return m.store.GetTask(ctx, taskID)
}

// systemActor records events the server decides on its own (crashes, restarts).
const systemActor = "system:supervisor"

// RecordPodEvent appends a pod lifecycle event to the task's stream, as the
// actor in ctx (the person who asked) or the supervisor itself. It is the
// supervisor's only way to write.
func (m *Manager) RecordPodEvent(ctx context.Context, taskID string, ev ipa.NewEvent) (ipa.Event, error) {
	actor := systemActor
	if a, ok := ipa.ActorFrom(ctx); ok {
		actor = a.ID
	}
	_, evs, err := m.append(ctx, taskID, nil, actor, func(cur *ipa.Task) ([]ipa.NewEvent, error) {
		if ev.Type == ipa.EventPodStarted || ev.Type == ipa.EventPodReattached {
			// A closed task never runs a pod: the supervisor stops a pod
			// whose start cannot be recorded.
			if err := ipa.ClosedTaskError(cur.Status); err != nil {
				return nil, err
			}
		}
		return []ipa.NewEvent{ev}, nil
	})
	if err != nil {
		return ipa.Event{}, err
	}
	return evs[0], nil
}

// PodTargets returns the open tasks whose stream says a pod runs or should
// run (ACTIVE, or pod BACKOFF or FAILED): what the supervisor reconciles
// against at start-up.
func (m *Manager) PodTargets(ctx context.Context) ([]*ipa.Task, error) {
	all, err := m.store.TasksWithPods(ctx)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, t := range all {
		if !t.Status.Closed() {
			out = append(out, t)
		}
	}
	return out, nil
}
