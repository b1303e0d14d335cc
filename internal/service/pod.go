package service

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/workspace"
)

// PodService starts, stops and shows pods. It is safe for concurrent use.
type PodService struct {
	store    TaskReader
	owners   LeaseOwners
	pods     Pods
	runtimes map[string]ipa.Runtime
	shared   *sharedPods     // set by ShareWith: several instances
	ws       *workspace.Dirs // see SetWorkspaces
	budgets  Budgets
}

// Budgets refuses to start the pod of a task over its budget.
type Budgets interface {
	CheckStart(ctx context.Context, taskID string) error
}

// SetBudgets makes pod starts check the task's budget. Call it before
// serving.
func (s *PodService) SetBudgets(b Budgets) { s.budgets = b }

func (s *PodService) checkBudget(ctx context.Context, taskID string) error {
	if s.budgets == nil {
		return nil
	}
	return s.budgets.CheckStart(ctx, taskID)
}

// LeaseOwners knows which instance holds a task's pod lease (the store).
type LeaseOwners interface {
	LeaseOwner(ctx context.Context, taskID string) (owner string, epoch int64, found bool, err error)
}

// NewPodService returns a PodService reading tasks from r, pod owners from
// owners, and driving pods of the given runtimes.
func NewPodService(r TaskReader, owners LeaseOwners, pods Pods, runtimes []ipa.Runtime) *PodService {
	s := &PodService{store: r, owners: owners, pods: pods, runtimes: make(map[string]ipa.Runtime, len(runtimes))}
	for _, rt := range runtimes {
		s.runtimes[rt.Name] = rt
	}
	return s
}

// openTaskFor is openTask plus the role the task's runtime needs to run.
func (s *PodService) openTaskFor(ctx context.Context, taskID string, expected *int64) (*ipa.Task, error) {
	t, err := openTask(ctx, s.store, taskID, expected)
	if err != nil {
		return nil, err
	}
	rt := s.runtimes[t.Runtime]
	if err := requireRuntimeRole(ctx, rt); err != nil {
		return nil, err
	}
	if rt.Unavailable != nil {
		return nil, rt.Unavailable
	}
	return t, nil
}

// Crashes returns the task's last recorded crashes, newest first, from its
// pod_crashed and pod_lost events (a lost pod shows as reason "lost").
// Requires VIEWER. Returns EINVALID when last is outside 1..1000.
func (s *PodService) Crashes(ctx context.Context, taskID string, last int) ([]ipa.PodCrash, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	if last < 1 || last > MaxPageSize {
		return nil, invalidArg("last must be between 1 and %d.", MaxPageSize)
	}
	evs, err := s.store.ReadEvents(ctx, ipa.EventQuery{TaskID: taskID, Types: []string{ipa.EventPodCrashed, ipa.EventPodLost}, Limit: last, Newest: true})
	if err != nil {
		return nil, err
	}
	out := make([]ipa.PodCrash, 0, len(evs))
	for _, e := range evs {
		if e.Type == ipa.EventPodLost {
			var d ipa.PodLostData
			_ = json.Unmarshal(e.Data, &d)
			out = append(out, ipa.PodCrash{At: e.OccurredAt, Reason: ipa.CrashLost, Message: lostMessage(d.Reason)})
			continue
		}
		var d ipa.PodCrashedData
		_ = json.Unmarshal(e.Data, &d)
		out = append(out, ipa.PodCrash{At: e.OccurredAt, ExitCode: d.ExitCode, Signal: d.Signal, Reason: d.Reason, Message: d.Message, UptimeMs: d.UptimeMs})
	}
	return out, nil
}

// lostMessage says in words why a pod was found lost (pod_lost's reason).
func lostMessage(reason string) string {
	switch reason {
	case ipa.LostProcessGone:
		return "The pod's process was gone when the server came back."
	case ipa.LostNoLease:
		return "The server came back and held no record of the pod's process."
	case ipa.LostReattachFailed:
		return "The pod's process did not answer when the server came back; it was stopped."
	case ipa.LostNotActive:
		return "A pod process of a task that should have none was found and stopped."
	case "instance_lost":
		return "The server instance that ran the pod stopped answering."
	case ipa.LostHostSilent:
		return "The pod stopped its work because its server was silent (paused or starved) for too long."
	case "":
		return "The pod was lost."
	}
	return "The pod was lost (" + reason + ")."
}

// ActivePods returns the tasks whose pod is STARTING, RUNNING, STOPPING or
// BACKOFF, as the pod view shows it (a CRASHED or FAILED pod is not active).
// Requires VIEWER.
func (s *PodService) ActivePods(ctx context.Context) ([]*ipa.Task, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	all, err := s.store.ActivePodTasks(ctx)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, t := range all {
		// The supervisor may know better than the row: a crash it is
		// recording right now.
		switch s.Pod(ctx, t).State {
		case ipa.PodStarting, ipa.PodRunning, ipa.PodStopping, ipa.PodBackoff, ipa.PodPaused:
			out = append(out, t)
		}
	}
	return out, nil
}

// StartPod starts the task's pod unless one runs; started is false when one
// already ran. Requires OPERATOR. Returns ENOTFOUND, ECONFLICT (closed,
// VERSION_CONFLICT), EUNAVAILABLE (RUNTIME_FAILED) when the runtime cannot
// start. A runtime with a role of its own (exec) needs that role too.
func (s *PodService) StartPod(ctx context.Context, taskID string, expected *int64) (*ipa.Task, bool, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleOperator); err != nil {
		return nil, false, err
	}
	t, err := s.openTaskFor(ctx, taskID, expected)
	if err != nil {
		return nil, false, err
	}
	if err := s.checkBudget(ctx, taskID); err != nil {
		return nil, false, err
	}
	started, err := s.pods.StartPod(ctx, t, ipa.TriggerManual, "")
	if err != nil {
		return nil, false, err
	}
	t, err = s.store.GetTask(ctx, taskID)
	return t, started, err
}

// StopPod stops the task's pod. Requires OPERATOR. Returns ENOTFOUND,
// ECONFLICT (NOT_RUNNING, closed, VERSION_CONFLICT).
func (s *PodService) StopPod(ctx context.Context, taskID string, reason *string, expected *int64) (*ipa.Task, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleOperator); err != nil {
		return nil, err
	}
	why, err := optionalText("The reason", reason)
	if err != nil {
		return nil, err
	}
	if why == "" {
		why = "stopped by request"
	}
	if _, err := openTask(ctx, s.store, taskID, expected); err != nil {
		return nil, err
	}
	if err := s.pods.StopPod(ctx, taskID, why); err != nil {
		if errors.Is(err, ipa.ErrPodNotRunning) {
			return nil, ipa.ErrPodNotRunning
		}
		return nil, err
	}
	return s.store.GetTask(ctx, taskID)
}

// RestartPod stops the pod if it runs, then starts it, clearing FAILED.
// Requires OPERATOR. Returns ENOTFOUND, ECONFLICT (closed, VERSION_CONFLICT),
// EUNAVAILABLE (RUNTIME_FAILED). A runtime with a role of its own (exec)
// needs that role too.
func (s *PodService) RestartPod(ctx context.Context, taskID string, expected *int64) (*ipa.Task, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleOperator); err != nil {
		return nil, err
	}
	t, err := s.openTaskFor(ctx, taskID, expected)
	if err != nil {
		return nil, err
	}
	if err := s.checkBudget(ctx, taskID); err != nil {
		return nil, err
	}
	if err := s.pods.RestartPod(ctx, t); err != nil {
		return nil, err
	}
	return s.store.GetTask(ctx, taskID)
}

// PodOwner returns the instance holding the task's pod lease, or "" when
// none does. Requires VIEWER.
func (s *PodService) PodOwner(ctx context.Context, taskID string) (string, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return "", err
	}
	owner, _, _, err := s.owners.LeaseOwner(ctx, taskID)
	return owner, err
}
