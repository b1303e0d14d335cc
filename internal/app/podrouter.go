package app

import (
	"context"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/supervisor"
)

// podRouter is the supervisor as the services see it, across instances: a
// stop or restart of a pod another instance owns is committed as a pod
// command for that owner (which is notified, acts, and deletes it), and the
// call waits, bounded, for that. Everything else is this instance's
// supervisor.
type podRouter struct {
	*supervisor.Supervisor
	st   *store.Store
	self string
	// wait bounds how long a command for another instance is waited for;
	// after it the call answers with the pod as it is then (e.g. STOPPING).
	wait time.Duration
}

// commandPoll is how often a waiting caller looks at its command.
const commandPoll = 10 * time.Millisecond

// StopPod stops the pod wherever it runs. Errors are the supervisor's, or
// the store's while reading the owner.
func (r podRouter) StopPod(ctx context.Context, taskID, reason string) error {
	return r.route(ctx, taskID, cmdStop, reason, func() error { return r.Supervisor.StopPod(ctx, taskID, reason) })
}

// RestartPod restarts the pod on the instance that owns it, or here.
func (r podRouter) RestartPod(ctx context.Context, t *ipa.Task) error {
	if t == nil {
		return r.Supervisor.RestartPod(ctx, t)
	}
	return r.route(ctx, t.ID, cmdRestart, "restart", func() error { return r.Supervisor.RestartPod(ctx, t) })
}

// PausePod pauses the pod on the instance that owns it, or here.
func (r podRouter) PausePod(ctx context.Context, taskID string) error {
	return r.route(ctx, taskID, cmdPause, "pause", func() error { return r.Supervisor.PausePod(ctx, taskID) })
}

// ResumePod resumes the pod on the instance that owns it, or here.
func (r podRouter) ResumePod(ctx context.Context, taskID string) error {
	return r.route(ctx, taskID, cmdResume, "resume", func() error { return r.Supervisor.ResumePod(ctx, taskID) })
}

// route runs local when no other instance owns the task's pod, else sends
// the command to the owner and waits until it was carried out (the row is
// gone), the owner changed (a takeover: sent again to the new owner), or the
// wait is over.
func (r podRouter) route(ctx context.Context, taskID, command, reason string, local func() error) error {
	deadline := time.Now().Add(r.wait)
	for {
		owner, _, found, err := r.st.LeaseOwner(ctx, taskID)
		if err != nil {
			return err
		}
		if !found || owner == r.self {
			return local()
		}
		id, err := r.st.AddPodCommand(ctx, store.PodCommand{TaskID: taskID, InstanceID: owner, Command: command, Reason: reason, CreatedAt: time.Now()})
		if err != nil {
			return err
		}
		rerouted := false
		for n := 0; !rerouted; n++ {
			if time.Now().After(deadline) {
				return nil // the command stays: the owner carries it out when it can
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(commandPoll):
			}
			pending, err := r.st.PodCommandPending(ctx, id)
			if err != nil {
				return err
			}
			if !pending {
				return nil
			}
			if n%20 == 19 { // now and then: has the pod changed hands?
				if o, _, f, err := r.st.LeaseOwner(ctx, taskID); err == nil && (!f || o != owner) {
					_ = r.st.DeletePodCommand(ctx, id)
					rerouted = true
				}
			}
		}
	}
}
