package manager

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// maxAppendRetries bounds how often a write without a client-given expected
// version is retried after losing an optimistic-concurrency race.
const maxAppendRetries = 5

// append runs decide against the task's current row and commits its events,
// retrying lost races when the caller named no expected version. It publishes
// what was committed. Returns the store's errors unchanged (TASK_NOT_FOUND,
// VERSION_CONFLICT, ...) and decide's errors.
func (m *Manager) append(ctx context.Context, taskID string, expected *int64, actor string, decide store.DecideFunc) (*ipa.Task, []ipa.Event, error) {
	want := store.AnyVersion
	if expected != nil {
		want = *expected
	}
	for attempt := 0; ; attempt++ {
		res, err := m.store.Append(ctx, store.AppendRequest{
			TaskID:          taskID,
			ExpectedVersion: want,
			Decide:          decide,
			Actor:           actor,
			CorrelationID:   ipa.CorrelationID(ctx),
		})
		if err != nil && expected == nil && ipa.ErrorReason(err) == ipa.ReasonVersionConflict && attempt < maxAppendRetries {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		m.publish(res.Events, res.Task)
		return res.Task, res.Events, nil
	}
}

// TransitionPhase moves the task to another phase under the phase rules.
// Requires OPERATOR. Returns ENOTFOUND, ECONFLICT (ALREADY_COMPLETED,
// ALREADY_CANCELLED, INVALID_TRANSITION, VERSION_CONFLICT), EINVALID.
func (m *Manager) TransitionPhase(ctx context.Context, taskID string, to ipa.Phase, note *string, expected *int64) (*ipa.Task, error) {
	actor, err := ipa.RequireRole(ctx, ipa.RoleOperator)
	if err != nil {
		return nil, err
	}
	n, err := optionalText("note", note)
	if err != nil {
		return nil, err
	}
	t, _, err := m.changePhase(ctx, taskID, actor.ID, to, n, "", expected)
	return t, err
}

// changePhase appends phase_changed when the rules allow it; shared by people
// and runtimes.
func (m *Manager) changePhase(ctx context.Context, taskID, actor string, to ipa.Phase, note, causation string, expected *int64) (*ipa.Task, []ipa.Event, error) {
	return m.append(ctx, taskID, expected, actor, func(cur *ipa.Task) ([]ipa.NewEvent, error) {
		if err := ipa.ClosedTaskError(cur.Status); err != nil {
			return nil, err
		}
		if err := ipa.CheckPhaseTransition(cur.Phase, to); err != nil {
			return nil, err
		}
		return []ipa.NewEvent{{
			Type:        ipa.EventPhaseChanged,
			Data:        ipa.PhaseChangedData{From: cur.Phase, To: to, Note: note},
			CausationID: causation,
		}}, nil
	})
}

// CompleteTask stops a running pod, then closes the task as completed.
// Requires OPERATOR. Returns ENOTFOUND, ECONFLICT (ALREADY_COMPLETED,
// ALREADY_CANCELLED, VERSION_CONFLICT).
func (m *Manager) CompleteTask(ctx context.Context, taskID string, expected *int64) (*ipa.Task, error) {
	actor, err := ipa.RequireRole(ctx, ipa.RoleOperator)
	if err != nil {
		return nil, err
	}
	return m.close(ctx, taskID, expected, actor.ID, "task completed", func(cur *ipa.Task) ipa.NewEvent {
		return ipa.NewEvent{Type: ipa.EventTaskCompleted, Data: ipa.TaskCompletedData{Phase: cur.Phase}}
	})
}

// CancelTask stops a running pod, then closes the task as cancelled with the
// reason. Requires OPERATOR. Returns EINVALID (MISSING_REASON) for a blank
// reason, ENOTFOUND, ECONFLICT (ALREADY_COMPLETED, ALREADY_CANCELLED,
// VERSION_CONFLICT).
func (m *Manager) CancelTask(ctx context.Context, taskID, reason string, expected *int64) (*ipa.Task, error) {
	actor, err := ipa.RequireRole(ctx, ipa.RoleOperator)
	if err != nil {
		return nil, err
	}
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonMissingReason, "A reason is required to cancel a task.")
	}
	if _, err := optionalText("reason", &reason); err != nil {
		return nil, err
	}
	return m.close(ctx, taskID, expected, actor.ID, "task cancelled", func(cur *ipa.Task) ipa.NewEvent {
		return ipa.NewEvent{Type: ipa.EventTaskCancelled, Data: ipa.TaskCancelledData{Reason: reason, Phase: cur.Phase}}
	})
}

// close checks the task is open (and at the expected version), stops its pod
// when one runs, then appends the closing event.
func (m *Manager) close(ctx context.Context, taskID string, expected *int64, actor, stopReason string, event func(*ipa.Task) ipa.NewEvent) (*ipa.Task, error) {
	cur, err := m.openTask(ctx, taskID, expected)
	if err != nil {
		return nil, err
	}
	if pods := m.podController(); pods != nil {
		if err := pods.StopPod(ctx, taskID, stopReason); err != nil && !isNotRunning(err) {
			return nil, err
		}
		// The stop appended pod events: the version the client named is now
		// older, but it was checked above, before anything changed.
		expected = nil
	} else if cur.PodState != ipa.PodStopped && cur.PodState != ipa.PodCrashed && cur.PodState != ipa.PodFailed {
		return nil, podsUnavailable()
	}
	t, _, err := m.append(ctx, taskID, expected, actor, func(cur *ipa.Task) ([]ipa.NewEvent, error) {
		if err := ipa.ClosedTaskError(cur.Status); err != nil {
			return nil, err
		}
		return []ipa.NewEvent{event(cur)}, nil
	})
	if err != nil {
		return nil, err
	}
	if pods := m.podController(); pods != nil {
		// A startPod that passed its checks before the close may have started
		// a pod between the stop above and the closing event; stop it too.
		// After the close no pod can start: pod_started is refused on a
		// closed task.
		if err := pods.StopPod(ctx, taskID, stopReason); err != nil && !isNotRunning(err) {
			m.log.WarnContext(ctx, "stop pod of closed task", "task_id", taskID, "err", err)
		}
		pods.Forget(taskID)
	}
	m.metrics.taskClosed(t)
	m.log.InfoContext(ctx, "task closed", "task_id", t.ID, "status", t.Status, "actor", actor,
		"correlation_id", ipa.CorrelationID(ctx))
	return t, nil
}

// openTask returns the task when it exists, is open and (when expected is
// given) is at that version.
func (m *Manager) openTask(ctx context.Context, taskID string, expected *int64) (*ipa.Task, error) {
	cur, err := m.store.GetTask(ctx, taskID)
	if err != nil {
		return nil, err
	}
	if err := ipa.ClosedTaskError(cur.Status); err != nil {
		return nil, err
	}
	if expected != nil && *expected != cur.Version {
		return nil, ipa.VersionConflict(*expected, cur.Version)
	}
	return cur, nil
}

// optionalText trims a free-text argument and bounds its length.
func optionalText(field string, s *string) (string, error) {
	if s == nil {
		return "", nil
	}
	v := strings.TrimSpace(*s)
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > ipa.MaxReasonChars || strings.ContainsRune(v, 0) {
		return "", invalidArg("%s must be UTF-8 text of at most %d characters, without NUL.", field, ipa.MaxReasonChars)
	}
	return v, nil
}
