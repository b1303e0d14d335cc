package conversation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// Pods stops pods, through their owner (the pod router).
type Pods interface {
	StopPod(ctx context.Context, taskID, reason string) error
}

// SetPods gives the service the pods it stops when a budget is exceeded.
// Call it once, before the server serves.
func (s *Service) SetPods(p Pods) { s.pods = p }

// accountingTypes are the events a task's usage, budget and pod time fold
// from.
var accountingTypes = []string{
	ipa.EventTaskCreated, ipa.EventTaskUpdated, ipa.EventUsageReported, ipa.EventBudgetExceeded,
	ipa.EventPodStarted, ipa.EventPodReattached, ipa.EventPodStopped, ipa.EventPodCrashed, ipa.EventPodLost,
}

// Account is a task's spending as its stream says.
type Account struct {
	Usage  ipa.Usage
	Budget *ipa.Budget
	// WallSeconds is how long the task's pods ran, the current run
	// included.
	WallSeconds int64
	// Recorded: budget_exceeded was recorded after the budget last
	// changed.
	Recorded bool
	Version  int64 // the task's version it was folded at
}

// Account folds the task's usage, budget and pod time.
func (s *Service) Account(ctx context.Context, taskID string) (Account, error) {
	t, err := s.st.GetTask(ctx, taskID)
	if err != nil {
		return Account{}, err
	}
	a := Account{Version: t.Version}
	var runStart *time.Time
	var wall time.Duration
	var budgetAt, exceededAt int64
	after := int64(0)
	for {
		page, err := s.st.ReadEvents(ctx, ipa.EventQuery{TaskID: taskID, After: after, Types: accountingTypes, Limit: 5000})
		if err != nil {
			return Account{}, err
		}
		for _, e := range page {
			if e.Version > t.Version {
				break
			}
			switch e.Type {
			case ipa.EventTaskCreated:
				var d ipa.TaskCreatedData
				if err := json.Unmarshal(e.Data, &d); err != nil {
					return Account{}, fmt.Errorf("decode task_created: %w", err)
				}
				a.Budget, budgetAt = d.Budget, e.Version
			case ipa.EventTaskUpdated:
				var d ipa.TaskUpdatedData
				if err := json.Unmarshal(e.Data, &d); err != nil {
					return Account{}, fmt.Errorf("decode task_updated: %w", err)
				}
				if d.Budget != nil {
					a.Budget, budgetAt = d.Budget, e.Version
				}
			case ipa.EventUsageReported:
				var u ipa.Usage
				if err := json.Unmarshal(e.Data, &u); err != nil {
					return Account{}, fmt.Errorf("decode usage_reported: %w", err)
				}
				a.Usage = a.Usage.Add(u)
			case ipa.EventBudgetExceeded:
				exceededAt = e.Version
			case ipa.EventPodStarted, ipa.EventPodReattached:
				if runStart == nil {
					at := e.OccurredAt
					runStart = &at
				}
			case ipa.EventPodStopped, ipa.EventPodCrashed, ipa.EventPodLost:
				if runStart != nil {
					wall += e.OccurredAt.Sub(*runStart)
					runStart = nil
				}
			}
		}
		if len(page) < 5000 {
			break
		}
		after = page[len(page)-1].Version
	}
	if runStart != nil && t.PodState == ipa.PodRunning {
		wall += s.now().Sub(*runStart)
	}
	a.WallSeconds = int64(wall / time.Second)
	a.Recorded = exceededAt > budgetAt
	return a, nil
}

// ReportUsage records usage_reported for the task's runtime, then checks
// the budget.
func (s *Service) ReportUsage(ctx context.Context, taskID, actor string, u podapi.Usage) error {
	if u.InputTokens < 0 || u.OutputTokens < 0 || u.CostMicros < 0 {
		return invalid("Usage is counted in non-negative numbers.")
	}
	if u == (podapi.Usage{}) {
		return nil
	}
	_, err := s.decide(ctx, taskID, actor, nil, func(t *ipa.Task, _ *ipa.Conversation) ([]ipa.NewEvent, error) {
		if err := ipa.ClosedTaskError(t.Status); err != nil {
			return nil, err
		}
		return []ipa.NewEvent{{Type: ipa.EventUsageReported, Data: ipa.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, CostMicros: u.CostMicros}}}, nil
	})
	if err != nil {
		return err
	}
	_, err = s.CheckBudget(ctx, taskID)
	return err
}

// CheckBudget records budget_exceeded (once per budget) when the task is
// over its budget and stops its pod with reason "budget" (in the
// background: the caller may be the pod itself). Reports whether it did.
func (s *Service) CheckBudget(ctx context.Context, taskID string) (bool, error) {
	a, err := s.Account(ctx, taskID)
	if err != nil {
		return false, err
	}
	limit := a.Budget.Exceeded(a.Usage, a.WallSeconds)
	if limit == "" || a.Recorded {
		return false, nil
	}
	v := a.Version
	_, _, err = s.w.Append(ctx, appendAt(taskID, &v, func(t *ipa.Task) ([]ipa.NewEvent, error) {
		if t.Status.Closed() {
			return nil, nil
		}
		return []ipa.NewEvent{{Type: ipa.EventBudgetExceeded, Data: ipa.BudgetExceededData{Limit: limit, Budget: *a.Budget, Usage: a.Usage, WallSeconds: a.WallSeconds}}}, nil
	}))
	var ie *ipa.Error
	if errors.As(err, &ie) && ie.Reason == ipa.ReasonVersionConflict {
		return false, nil // someone else wrote first; the next report or sweep checks again
	}
	if err != nil {
		return false, err
	}
	if s.pods != nil {
		s.bg.Go(func() {
			ctx, cancel := context.WithTimeout(s.bgCtx, time.Minute)
			defer cancel()
			if err := s.pods.StopPod(ctx, taskID, ipa.StopReasonBudget); err != nil && !errors.Is(err, ipa.ErrPodNotRunning) {
				s.log.Warn("stop a pod over its budget", "task_id", taskID, "err", err)
			}
		})
	}
	return true, nil
}

// CheckStart refuses to start the pod of a task over its budget
// (CONFLICT/BUDGET_EXCEEDED): raise the budget first.
func (s *Service) CheckStart(ctx context.Context, taskID string) error {
	a, err := s.Account(ctx, taskID)
	if err != nil {
		return err
	}
	if limit := a.Budget.Exceeded(a.Usage, a.WallSeconds); limit != "" {
		return ipa.Errorf(ipa.ECONFLICT, ipa.ReasonBudgetExceeded, "The task's budget (%s) is spent; raise it with updateTask to start its pod.", limit)
	}
	return nil
}

// SweepBudgets checks the budgets of the tasks whose pods run (wall time
// passes without reports).
func (s *Service) SweepBudgets(ctx context.Context) error {
	if s.active == nil {
		return nil
	}
	tasks, err := s.active.ActivePodTasks(ctx)
	if err != nil {
		return err
	}
	for _, t := range tasks {
		if _, err := s.CheckBudget(ctx, t.ID); err != nil && ctx.Err() == nil {
			var ie *ipa.Error
			if errors.As(err, &ie) && ie.Code == ipa.ENOTFOUND {
				continue
			}
			return err
		}
	}
	return nil
}

// Close ends the service's background work (pod stops) and waits for it.
func (s *Service) Close() {
	s.bgCancel()
	s.bg.Wait()
}
