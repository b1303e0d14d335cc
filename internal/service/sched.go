package service

import (
	"context"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// MaxPriority bounds a task's priority either way.
const MaxPriority = 1_000_000

func checkPriority(p int) error {
	if p < -MaxPriority || p > MaxPriority {
		return invalidArg("priority must be between %d and %d.", -MaxPriority, MaxPriority)
	}
	return nil
}

// LimitStore is the part of the store that keeps concurrency limits and
// the pod queue.
type LimitStore interface {
	SetConcurrencyLimit(ctx context.Context, key string, limit *int, now time.Time) (ipa.ConcurrencyLimit, error)
	ConcurrencyLimits(ctx context.Context) ([]ipa.ConcurrencyLimit, error)
	QueuePosition(ctx context.Context, taskID string) (int, error)
	QueuedTasks(ctx context.Context, limit int) ([]string, error)
}

// SchedulingService sets and shows concurrency limits and the queue.
type SchedulingService struct {
	store LimitStore
	tasks TaskReader
}

// NewSchedulingService returns a SchedulingService on st.
func NewSchedulingService(st LimitStore, tasks TaskReader) *SchedulingService {
	return &SchedulingService{store: st, tasks: tasks}
}

// SetConcurrencyLimit sets the limit of key, or removes it when limit is
// nil. Requires ADMIN. Returns EINVALID (INVALID_LIMIT_KEY, or
// INVALID_ARGUMENT for a limit outside 0..MaxConcurrencyLimit). A limit of 0
// holds every start it covers in the queue.
func (s *SchedulingService) SetConcurrencyLimit(ctx context.Context, key string, limit *int) (ipa.ConcurrencyLimit, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleAdmin); err != nil {
		return ipa.ConcurrencyLimit{}, err
	}
	k, err := ipa.CheckLimitKey(key)
	if err != nil {
		return ipa.ConcurrencyLimit{}, err
	}
	if limit != nil && (*limit < 0 || *limit > ipa.MaxConcurrencyLimit) {
		return ipa.ConcurrencyLimit{}, invalidArg("limit must be between 0 and %d, or null to remove it.", ipa.MaxConcurrencyLimit)
	}
	return s.store.SetConcurrencyLimit(ctx, k, limit, time.Now())
}

// ConcurrencyLimits returns every limit with its slots held and pods
// queued now. Requires VIEWER.
func (s *SchedulingService) ConcurrencyLimits(ctx context.Context) ([]ipa.ConcurrencyLimit, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	return s.store.ConcurrencyLimits(ctx)
}

// QueuePosition returns the place of the task's queued pod (1 first), or
// nil when it is not queued. Requires VIEWER.
func (s *SchedulingService) QueuePosition(ctx context.Context, t *ipa.Task) (*int, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	if t.PodState != ipa.PodQueued {
		return nil, nil
	}
	n, err := s.store.QueuePosition(ctx, t.ID)
	if err != nil || n == 0 {
		return nil, err
	}
	return &n, nil
}

// QueuedTasks returns the tasks whose pods wait in the queue, in the order
// they will start, at most first (1..MaxPageSize). Requires VIEWER.
func (s *SchedulingService) QueuedTasks(ctx context.Context, first int) ([]*ipa.Task, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	if first < 1 || first > MaxPageSize {
		return nil, invalidArg("first must be between 1 and %d.", MaxPageSize)
	}
	ids, err := s.store.QueuedTasks(ctx, first)
	if err != nil {
		return nil, err
	}
	out := make([]*ipa.Task, 0, len(ids))
	for _, id := range ids {
		t, err := s.tasks.GetTask(ctx, id)
		if err != nil {
			if ipa.ErrorCode(err) == ipa.ENOTFOUND {
				continue
			}
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}
