package ipa

import (
	"encoding/json"
	"fmt"
	"time"
)

// Apply folds one event into the task's projection. It is the only place that
// knows how events change a task row, and it is used both when an event is
// appended (in the same transaction) and by reproject, so both always agree.
// t must be the zero Task for a task_created event. Returns an error for an
// event that cannot follow the task's current state (a corrupt stream).
func Apply(t *Task, e Event) error {
	if e.Version != t.Version+1 {
		return fmt.Errorf("apply %s v%d to task %s at v%d: version gap", e.Type, e.Version, e.TaskID, t.Version)
	}
	switch e.Type {
	case EventTaskCreated:
		if t.Version != 0 {
			return fmt.Errorf("apply task_created to task %s at v%d", e.TaskID, t.Version)
		}
		var d TaskCreatedData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("decode task_created of %s: %w", e.TaskID, err)
		}
		*t = Task{
			ID:            e.TaskID,
			Title:         d.Title,
			Description:   d.Description,
			Status:        StatusInactive,
			Phase:         PhaseSpecClarification,
			Runtime:       d.Runtime,
			RuntimeConfig: orEmptyObject(d.RuntimeConfig),
			Metadata:      orEmptyObject(d.Metadata),
			RestartPolicy: d.RestartPolicy,
			PodState:      PodStopped,
			Labels:        orNoLabels(d.Labels),
			ParentID:      d.ParentID,
			Deadline:      utcPtr(d.Deadline),
			Priority:      d.Priority,
			DependsOn:     orNoDeps(d.DependsOn),
			CreatedBy:     e.ActorID,
			CreatedAt:     e.OccurredAt,
		}
	case EventTaskUpdated:
		var d TaskUpdatedData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("decode task_updated of %s: %w", e.TaskID, err)
		}
		if d.Title != nil {
			t.Title = *d.Title
		}
		if d.Description != nil {
			t.Description = *d.Description
		}
		if d.Metadata != nil {
			t.Metadata = orEmptyObject(d.Metadata)
		}
		if d.Labels != nil {
			t.Labels = orNoLabels(*d.Labels)
		}
		if d.RestartPolicy != nil {
			t.RestartPolicy = *d.RestartPolicy
		}
		if d.Deadline != nil {
			t.Deadline = utcPtr(d.Deadline)
		}
		if d.Priority != nil {
			t.Priority = *d.Priority
		}
		if d.DependsOn != nil {
			t.DependsOn = orNoDeps(*d.DependsOn)
		}
	case EventPhaseChanged:
		var d PhaseChangedData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("decode phase_changed of %s: %w", e.TaskID, err)
		}
		t.Phase = d.To
	case EventTaskCompleted:
		t.Status, t.Phase, t.PodState = StatusCompleted, PhaseCompleted, PodStopped
		at := e.OccurredAt
		t.ClosedAt = &at
	case EventTaskCancelled:
		t.Status, t.Phase, t.PodState = StatusCancelled, PhaseCancelled, PodStopped
		at := e.OccurredAt
		t.ClosedAt = &at
	case EventPodStarted:
		t.Status, t.PodState = StatusActive, PodRunning
	case EventPodReattached:
		// A pod paused before a server crash is still paused.
		t.Status = StatusActive
		if t.PodState != PodPaused {
			t.PodState = PodRunning
		}
	case EventPodPaused:
		t.PodState = PodPaused
	case EventPodResumed:
		t.PodState = PodRunning
	case EventPodStopped:
		t.Status, t.PodState = openStatus(t.Status, StatusInactive), PodStopped
	case EventPodCrashed, EventPodLost:
		t.Status, t.PodState = openStatus(t.Status, StatusInactive), PodCrashed
	case EventPodQueued, EventPodWaiting:
		// A queued pod may be granted its slot and start before its
		// pod_queued is appended: a pod that runs stays running.
		switch t.PodState {
		case PodRunning, PodBackoff, PodStarting, PodStopping:
		default:
			if !t.Status.Closed() {
				t.PodState = PodQueued
				if e.Type == EventPodWaiting {
					t.PodState = PodWaiting
				}
			}
		}
	case EventPodRestartScheduled:
		t.PodState = PodBackoff
	case EventPodRestartLimitReached:
		t.PodState = PodFailed
	case EventTaskArchived:
		t.Archived = true
	}
	t.Version = e.Version
	t.UpdatedAt = e.OccurredAt
	return nil
}

// openStatus keeps a closed status closed: a late pod event never reopens a task.
func openStatus(current, next TaskStatus) TaskStatus {
	if current.Closed() {
		return current
	}
	return next
}

// orNoDeps keeps "no dependencies" one value (nil), however it was written.
func orNoDeps(d []string) []string {
	if len(d) == 0 {
		return nil
	}
	return d
}

func orNoLabels(l Labels) Labels {
	if l == nil {
		return Labels{}
	}
	return l
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func orEmptyObject(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return json.RawMessage("{}")
	}
	return raw
}
