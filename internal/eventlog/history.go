package eventlog

import (
	"context"
	"slices"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// EventReader is the part of the store PodHistory reads through.
type EventReader interface {
	ReadEvents(ctx context.Context, q ipa.EventQuery) ([]ipa.Event, error)
}

// podHistoryLimit bounds one read of a task's recent pod events: far more
// than any restart policy counts inside its window (maxAttempts is small),
// and small enough never to load a long stream.
const podHistoryLimit = 500

// PodHistory reads back the pod facts the PodRecorder wrote, for the
// supervisor's restart accounting after a server restart.
type PodHistory struct{ r EventReader }

// NewPodHistory returns a PodHistory reading through r.
func NewPodHistory(r EventReader) PodHistory { return PodHistory{r: r} }

// RecentPodEvents returns the task's pod_started, pod_crashed and pod_lost
// events that occurred at or after since, oldest first: the newest
// podHistoryLimit of them at most. Returns the store's errors unchanged.
func (h PodHistory) RecentPodEvents(ctx context.Context, taskID string, since time.Time) ([]ipa.Event, error) {
	evs, err := h.r.ReadEvents(ctx, ipa.EventQuery{
		TaskID: taskID, Newest: true, Limit: podHistoryLimit,
		Types: []string{ipa.EventPodStarted, ipa.EventPodCrashed, ipa.EventPodLost},
	})
	if err != nil {
		return nil, err
	}
	// Newest first: keep those inside the window, then turn them around.
	n := 0
	for n < len(evs) && !evs[n].OccurredAt.Before(since) {
		n++
	}
	evs = evs[:n]
	slices.Reverse(evs)
	return evs, nil
}
