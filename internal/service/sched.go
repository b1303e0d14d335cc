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

// dependents is the part of the store that finds the open tasks depending
// on a task.
type dependents interface {
	Dependents(ctx context.Context, taskID string) ([]string, error)
}

// checkDependsOn validates a dependsOn list for task self ("" at create):
// at most MaxDependencies distinct existing tasks, not self, and — for an
// update — no cycle back to self through the dependencies' own lists.
// Returns the list without duplicates, or EINVALID (INVALID_DEPENDENCY,
// DEPENDENCY_CYCLE).
func (s *TaskService) checkDependsOn(ctx context.Context, self string, ids []string) ([]string, error) {
	if len(ids) > ipa.MaxDependencies {
		return nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidDependency, "A task may depend on at most %d tasks.", ipa.MaxDependencies)
	}
	seen := map[string]bool{}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		if id == self {
			return nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonDependencyCycle, "A task cannot depend on itself.")
		}
		dep, err := s.store.GetTask(ctx, id)
		if err != nil {
			if ipa.ErrorCode(err) == ipa.ENOTFOUND {
				return nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidDependency, "dependsOn names no task %q.", id)
			}
			return nil, err
		}
		if dep.Status == ipa.StatusCancelled {
			return nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidDependency, "Task %q is cancelled: a task depending on it could never start.", id)
		}
		out = append(out, id)
	}
	if self == "" || len(out) == 0 {
		return out, nil // a task being created has no dependents yet: no cycle
	}
	// Walk the dependencies' own dependencies: reaching self is a cycle.
	visited := map[string]bool{}
	stack := append([]string(nil), out...)
	for steps := 0; len(stack) > 0; steps++ {
		if steps > 10_000 {
			return nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidDependency, "The dependencies are too many to check.")
		}
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if id == self {
			return nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonDependencyCycle, "These dependencies would make the task wait for itself.")
		}
		if visited[id] {
			continue
		}
		visited[id] = true
		t, err := s.store.GetTask(ctx, id)
		if err != nil {
			if ipa.ErrorCode(err) == ipa.ENOTFOUND {
				continue
			}
			return nil, err
		}
		stack = append(stack, t.DependsOn...)
	}
	return out, nil
}

// cancelDependents cancels, with reason "dependency cancelled", the open
// tasks that depend on taskID (and, through the same path, theirs).
func (s *TaskService) cancelDependents(ctx context.Context, taskID, actor, causationID string) {
	d, ok := s.store.(dependents)
	if !ok {
		return
	}
	ids, err := d.Dependents(ctx, taskID)
	if err != nil {
		s.log.WarnContext(ctx, "read dependents", "task_id", taskID, "err", err)
		return
	}
	for _, id := range ids {
		_, err := s.cancelTree(ctx, id, ipa.DependencyCancelledReason, nil, actor, causationID, nil)
		switch ipa.ErrorReason(err) {
		case "", ipa.ReasonAlreadyCancelled, ipa.ReasonAlreadyCompleted:
		default:
			s.log.WarnContext(ctx, "cancel dependent", "task_id", id, "dependency", taskID, "err", err)
		}
	}
}

// Dependencies returns the tasks t depends on, in its order (those deleted
// since are left out); only those not COMPLETED when pending. Requires
// VIEWER.
func (s *SchedulingService) Dependencies(ctx context.Context, t *ipa.Task, pending bool) ([]*ipa.Task, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	out := make([]*ipa.Task, 0, len(t.DependsOn))
	for _, id := range t.DependsOn {
		d, err := s.tasks.GetTask(ctx, id)
		if err != nil {
			if ipa.ErrorCode(err) == ipa.ENOTFOUND {
				continue
			}
			return nil, err
		}
		if pending && d.Status == ipa.StatusCompleted {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}
