package service

import (
	"context"
	"encoding/json"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// PodLeases is the part of the store that knows which instance runs a pod,
// and the facts that owner recorded with its lease.
type PodLeases interface {
	PodLease(ctx context.Context, taskID string) (owner string, lease []byte, found bool, err error)
}

// sharedPods is what a PodService needs when several instances share the
// database: its own instance id, the leases, and the default restart policy
// (the window a task without a policy of its own counts restarts in).
type sharedPods struct {
	self          string
	leases        PodLeases
	defaultPolicy ipa.RestartPolicy
}

// ShareWith makes the service answer, for a pod this instance does not own,
// what the store says rather than what this instance's supervisor
// remembers (which may be long stale: a pod it ran before another instance
// took it over). Every instance then answers the same Pod for a task. Call
// it before serving; without it (SQLite, one instance) the supervisor's view
// is the only one.
func (s *PodService) ShareWith(self string, leases PodLeases, defaultPolicy ipa.RestartPolicy) {
	s.shared = &sharedPods{self: self, leases: leases, defaultPolicy: defaultPolicy}
}

// Pod returns the pod view of a task. The instance that owns the pod
// answers from its supervisor's live view; any other instance answers from
// the store: the state recorded in the task's stream, the pid and start time
// its owner recorded with the lease, and the automatic restarts the stream
// holds inside the policy window. A pod no instance holds a lease of is
// answered from the stream too, except while this instance is starting or
// stopping it.
func (s *PodService) Pod(ctx context.Context, t *ipa.Task) *ipa.Pod {
	if s.shared == nil {
		return s.localPod(t)
	}
	owner, lease, found, err := s.shared.leases.PodLease(ctx, t.ID)
	if err != nil {
		// The store is out of reach: what this instance knows is all there is.
		return s.localPod(t)
	}
	if found && owner == s.shared.self {
		return s.localPod(t)
	}
	if !found {
		if st := s.pods.Status(t.ID); st.Known && (st.State == ipa.PodStarting || st.State == ipa.PodStopping) {
			return s.localPod(t)
		}
	}
	return s.storedPod(ctx, t, lease, found)
}

// localPod is the supervisor's live view when it holds one, else the state
// recorded in the task's stream.
func (s *PodService) localPod(t *ipa.Task) *ipa.Pod {
	v := &ipa.Pod{TaskID: t.ID, State: t.PodState}
	if v.State == "" {
		v.State = ipa.PodStopped
	}
	if st := s.pods.Status(t.ID); st.Known {
		v.State, v.StartedAt, v.Restarts, v.NextAttemptAt = st.State, st.StartedAt, st.Restarts, st.NextAttemptAt
		if st.PID > 0 {
			pid := st.PID
			v.PID = &pid
		}
		if st.State == ipa.PodRunning {
			v.Live = st.Live
		}
	}
	return queuedView(t, v)
}

// queuedView keeps QUEUED and WAITING, which only the stream knows: a
// supervisor that ran the pod before remembers it stopped.
func queuedView(t *ipa.Task, v *ipa.Pod) *ipa.Pod {
	if t.PodState == ipa.PodQueued || t.PodState == ipa.PodWaiting {
		switch v.State {
		case ipa.PodStopped, ipa.PodCrashed, ipa.PodFailed:
			v.State = t.PodState
		}
	}
	return v
}

// leaseFacts are the fields of the owner's lease (supervisor.Lease) a Pod
// shows.
type leaseFacts struct {
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"startedAt"`
}

// storedPod is the pod as the store records it.
func (s *PodService) storedPod(ctx context.Context, t *ipa.Task, lease []byte, found bool) *ipa.Pod {
	v := &ipa.Pod{TaskID: t.ID, State: t.PodState}
	if v.State == "" {
		v.State = ipa.PodStopped
	}
	var f leaseFacts
	// A paused pod's process lives on under its lease, as a running one's:
	// the owner shows its pid and start time, so every instance does.
	live := v.State == ipa.PodRunning || v.State == ipa.PodPaused
	if found && live && json.Unmarshal(lease, &f) == nil {
		if f.PID > 0 {
			pid := f.PID
			v.PID = &pid
		}
		if !f.StartedAt.IsZero() {
			at := f.StartedAt.UTC()
			v.StartedAt = &at
		}
	}
	v.Restarts = s.storedRestarts(ctx, t)
	return queuedView(t, v)
}

// storedRestarts counts the task's automatic restarts inside its policy
// window from its stream, as the owner's supervisor counts them: a
// pod_started with trigger "restart" or an automatic restart that failed to
// launch (pod_crashed start_failed), back to the last manual start.
func (s *PodService) storedRestarts(ctx context.Context, t *ipa.Task) int {
	pol := t.RestartPolicy
	if pol.WindowSeconds == 0 {
		pol = s.shared.defaultPolicy
	}
	if !pol.AutoRestart || pol.WindowSeconds <= 0 || t.Status.Closed() {
		// No automatic restarts to count (a closed task's pod never
		// restarts again).
		return 0
	}
	cutoff := time.Now().Add(-time.Duration(pol.WindowSeconds) * time.Second)
	evs, err := s.store.ReadEvents(ctx, ipa.EventQuery{
		TaskID: t.ID, Newest: true, Limit: restartHistoryLimit,
		Types: []string{ipa.EventPodStarted, ipa.EventPodCrashed},
	})
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range evs { // newest first
		if e.OccurredAt.Before(cutoff) {
			break
		}
		switch e.Type {
		case ipa.EventPodStarted:
			var d ipa.PodStartedData
			if json.Unmarshal(e.Data, &d) != nil {
				continue
			}
			switch d.Trigger {
			case ipa.TriggerManual:
				return n
			case ipa.TriggerRestart:
				n++
			}
		case ipa.EventPodCrashed:
			var d ipa.PodCrashedData
			if json.Unmarshal(e.Data, &d) == nil && d.Reason == ipa.CrashStartFailed {
				n++
			}
		}
	}
	return n
}

// restartHistoryLimit bounds the events read to count restarts: far more
// than any policy allows inside its window.
const restartHistoryLimit = 500
