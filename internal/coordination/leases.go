package coordination

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ipa-dev/ipa/internal/supervisor"
)

// LeaseStore keeps the supervisor's pod leases in the database, one owner
// per pod, so several servers on one database never run the same task's pod
// twice (supervisor.LeaseStore).
type LeaseStore struct {
	st    Leases
	owner string
}

// NewLeaseStore returns the supervisor.LeaseStore of instance owner. (The
// supervisor is built before the Coordinator that drives it.)
func NewLeaseStore(st Leases, owner string) LeaseStore {
	return LeaseStore{st: st, owner: owner}
}

// Save records the lease as this instance's; ipa.ErrLeaseHeld when another
// instance holds the task's lease.
func (l LeaseStore) Save(ctx context.Context, lease supervisor.Lease) error {
	data, err := json.Marshal(lease)
	if err != nil {
		return err
	}
	return l.st.SaveLease(ctx, l.owner, lease.TaskID, data, time.Now())
}

// Delete drops this instance's lease of the task.
func (l LeaseStore) Delete(ctx context.Context, taskID string) error {
	return l.st.DeleteLease(ctx, l.owner, taskID)
}

// List returns this instance's leases.
func (l LeaseStore) List(ctx context.Context) ([]supervisor.Lease, error) {
	rows, err := l.st.ListLeases(ctx, l.owner)
	if err != nil {
		return nil, err
	}
	out := make([]supervisor.Lease, 0, len(rows))
	for _, r := range rows {
		var lease supervisor.Lease
		if err := json.Unmarshal(r, &lease); err != nil {
			return nil, fmt.Errorf("decode pod lease: %w", err)
		}
		out = append(out, lease)
	}
	return out, nil
}

// requeuer is a store that can give a pod whose start was never recorded
// back to the scheduling queue (store.RequeueLease).
type requeuer interface {
	RequeueLease(ctx context.Context, owner, taskID string, now time.Time) (bool, error)
}

// Requeue gives the task's pod back to the queue in place of this
// instance's lease when the stream says the pod is QUEUED: its granted
// start never got recorded (supervisor.Requeuer). False when the store
// cannot, or the pod is in any other state.
func (l LeaseStore) Requeue(ctx context.Context, taskID string) (bool, error) {
	rq, ok := l.st.(requeuer)
	if !ok {
		return false, nil
	}
	return rq.RequeueLease(ctx, l.owner, taskID, time.Now())
}
