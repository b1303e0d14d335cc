package eventlog

import (
	"context"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// SystemActor records events the server decides on its own (crashes,
// restarts, reconcile).
const SystemActor = "system:supervisor"

// PodRecorder is the supervisor's only way to write: it appends pod lifecycle
// events (pod_started, pod_crashed, …) to the task's stream.
type PodRecorder struct{ w *Writer }

// NewPodRecorder returns a recorder writing through w.
func NewPodRecorder(w *Writer) PodRecorder { return PodRecorder{w: w} }

// RecordPodEvent appends ev to the task's stream as the actor in ctx (the
// person whose request caused it) or as SystemActor. pod_started and
// pod_reattached are refused on a closed task (ALREADY_COMPLETED /
// ALREADY_CANCELLED), so a closed task never runs a pod: the supervisor stops
// a pod whose start cannot be recorded. Returns the store's errors unchanged.
func (r PodRecorder) RecordPodEvent(ctx context.Context, taskID string, ev ipa.NewEvent) (ipa.Event, error) {
	actor := SystemActor
	if a, ok := ipa.ActorFrom(ctx); ok {
		actor = a.ID
	}
	_, evs, err := r.w.Append(ctx, Append{TaskID: taskID, Actor: actor, Decide: func(cur *ipa.Task) ([]ipa.NewEvent, error) {
		if ev.Type == ipa.EventPodStarted || ev.Type == ipa.EventPodReattached {
			if err := ipa.ClosedTaskError(cur.Status); err != nil {
				return nil, err
			}
		}
		return []ipa.NewEvent{ev}, nil
	}})
	if err != nil {
		return ipa.Event{}, err
	}
	return evs[0], nil
}
