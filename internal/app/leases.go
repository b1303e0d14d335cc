package app

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/supervisor"
)

// leaseStore keeps the supervisor's pod leases in the database, one owner
// per pod, so several servers on one PostgreSQL database never run the same
// task's pod twice.
type leaseStore struct {
	st    *store.Store
	owner string
}

func (l leaseStore) Save(ctx context.Context, lease supervisor.Lease) error {
	data, err := json.Marshal(lease)
	if err != nil {
		return err
	}
	return l.st.SaveLease(ctx, l.owner, lease.TaskID, data, time.Now())
}

func (l leaseStore) Delete(ctx context.Context, taskID string) error {
	return l.st.DeleteLease(ctx, l.owner, taskID)
}

func (l leaseStore) List(ctx context.Context) ([]supervisor.Lease, error) {
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
