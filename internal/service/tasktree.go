package service

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// Edits, parent and child tasks, and deadlines.

// DeadlineActor is the actor of the cancellations a passed deadline causes.
const DeadlineActor = "system:deadline"

// DeadlineReason is the reason of those cancellations.
const DeadlineReason = "deadline exceeded"

// dueBatch is how many passed deadlines one sweep handles.
const dueBatch = 100

// dueWorkers is how many passed deadlines a sweep cancels at once. Each
// cancellation is its own write transaction; several in flight let the
// store's writer commit them together (group commit) instead of one commit
// per task.
const dueWorkers = 8

// maxCancelRounds bounds how often cancelling a parent goes back for children
// created while it was cancelling the others.
const maxCancelRounds = 10

// openStatuses are the statuses of an open task.
var openStatuses = []ipa.TaskStatus{ipa.StatusActive, ipa.StatusInactive}

// UpdateTask changes the given fields of an open task and records a
// task_updated event carrying only the fields that changed; when nothing
// changes it records nothing and returns the task as it is. Labels, when
// given, replace the whole set; restartPolicy is merged field by field into
// the current policy. Requires OPERATOR. Returns EINVALID (INVALID_TITLE,
// INVALID_LABELS, INVALID_ARGUMENT), ENOTFOUND, ECONFLICT (ALREADY_COMPLETED,
// ALREADY_CANCELLED, VERSION_CONFLICT).
func (s *TaskService) UpdateTask(ctx context.Context, taskID string, in ipa.UpdateTaskInput, expected *int64) (*ipa.Task, error) {
	actor, err := ipa.RequireRole(ctx, ipa.RoleOperator)
	if err != nil {
		return nil, err
	}
	if in.Priority != nil {
		if err := checkPriority(*in.Priority); err != nil {
			return nil, err
		}
	}
	var deps *[]string
	if in.DependsOn != nil {
		d, err := s.checkDependsOn(ctx, taskID, in.DependsOn)
		if err != nil {
			return nil, err
		}
		deps = &d
	}
	var title *string
	if in.Title != nil {
		t, err := ipa.NormalizeTitle(*in.Title)
		if err != nil {
			return nil, err
		}
		title = &t
	}
	if in.Description != nil {
		if err := validDescription(*in.Description); err != nil {
			return nil, err
		}
	}
	var metadata json.RawMessage
	if in.Metadata != nil {
		if metadata, err = jsonObject("metadata", in.Metadata, ipa.MaxMetadataBytes); err != nil {
			return nil, err
		}
	}
	var labels *ipa.Labels
	if in.Labels != nil {
		l, err := ipa.ParseLabels(in.Labels)
		if err != nil {
			return nil, err
		}
		labels = &l
	}
	budget, err := in.Budget.Budget()
	if err != nil {
		return nil, err
	}
	t, _, err := s.writer.Append(ctx, eventlog.Append{TaskID: taskID, Expected: expected, Actor: actor.ID, Decide: func(cur *ipa.Task) ([]ipa.NewEvent, error) {
		if err := ipa.ClosedTaskError(cur.Status); err != nil {
			return nil, err
		}
		var d ipa.TaskUpdatedData
		if title != nil && *title != cur.Title {
			d.Title = title
		}
		if in.Description != nil && *in.Description != cur.Description {
			d.Description = in.Description
		}
		if metadata != nil && !sameJSON(metadata, cur.Metadata) {
			d.Metadata = metadata
		}
		if labels != nil && !labels.Equal(cur.Labels) {
			d.Labels = labels
		}
		if in.RestartPolicy != nil {
			p := in.RestartPolicy.Apply(cur.RestartPolicy)
			if err := p.Validate(); err != nil {
				return nil, err
			}
			if p != cur.RestartPolicy {
				d.RestartPolicy = &p
			}
		}
		if in.Deadline != nil && (cur.Deadline == nil || !cur.Deadline.Equal(*in.Deadline)) {
			at := in.Deadline.UTC()
			d.Deadline = &at
		}
		// The budget is not on the row: a given one is always recorded
		// (raising it lets a pod stopped by it start again).
		d.Budget = budget
		if in.Priority != nil && *in.Priority != cur.Priority {
			p := *in.Priority
			d.Priority = &p
		}
		if deps != nil && !slices.Equal(*deps, cur.DependsOn) && (len(*deps) > 0 || len(cur.DependsOn) > 0) {
			d.DependsOn = deps
		}
		if d.Empty() {
			return nil, nil
		}
		return []ipa.NewEvent{{Type: ipa.EventTaskUpdated, Data: d}}, nil
	}})
	return t, err
}

func validDescription(d string) error {
	if len(d) > ipa.MaxDescriptionBytes {
		return invalidArg("description is %d bytes; the limit is %d.", len(d), ipa.MaxDescriptionBytes)
	}
	// Several lines are fine; other control characters and invalid
	// UTF-8 are refused (INVALID_TEXT), never rewritten.
	return ipa.CheckMultiline("The description", d)
}

func sameJSON(a, b json.RawMessage) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// checkParentDepth returns EINVALID (INVALID_PARENT) when parentID names no
// task, a closed task, or a task so deep that a child would pass
// ipa.MaxTaskDepth. Parent links never change, so walking up outside the
// creating transaction is exact; whether the parent is still open is checked
// again in that transaction by the store.
func (s *TaskService) checkParentDepth(ctx context.Context, parentID string) error {
	if parentID == "" {
		return nil
	}
	depth := 1
	for id := parentID; id != ""; depth++ {
		if depth >= ipa.MaxTaskDepth {
			return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidParent, "Tasks nest at most %d deep.", ipa.MaxTaskDepth)
		}
		t, err := s.store.GetTask(ctx, id)
		if ipa.ErrorCode(err) == ipa.ENOTFOUND {
			return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidParent, "No parent task with id %q.", id)
		}
		if err != nil {
			return err
		}
		if id == parentID && t.Status.Closed() {
			return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidParent, "The parent task is closed (%s); a child needs an open parent.", t.Status)
		}
		id = t.ParentID
	}
	return nil
}

// refuseOpenChildren returns ECONFLICT (OPEN_CHILDREN) when the task has an
// open child.
func (s *TaskService) refuseOpenChildren(ctx context.Context, taskID string) error {
	n, err := s.store.CountTasks(ctx, ipa.TaskFilter{ParentID: &taskID, Statuses: openStatuses})
	if err != nil {
		return err
	}
	if n > 0 {
		return ipa.Errorf(ipa.ECONFLICT, ipa.ReasonOpenChildren, "The task has %d open child tasks; complete or cancel them first.", n)
	}
	return nil
}

// cancelTree cancels the task and, first, its open children (recursively).
//
// Children go first so that the parent's task_cancelled commits only when no
// child is open: the store refuses to close a task with an open child in the
// closing transaction, and refuses to create a child under a closed parent,
// so a child created meanwhile sends this back for another round. Each
// child's task_cancelled names the parent's task_cancelled as its causation:
// that event's id is chosen here, before the children are cancelled. If the
// server stops half-way, some children are cancelled and the parent is still
// open (never the other way round); cancelling again finishes the job.
// guard, when set, is checked before anything happens and in the parent's
// closing transaction.
func (s *TaskService) cancelTree(ctx context.Context, taskID, reason string, expected *int64, actor, causationID string, guard func(*ipa.Task) error) (*ipa.Task, error) {
	cur, err := openTask(ctx, s.store, taskID, expected)
	if err != nil {
		return nil, err
	}
	if guard != nil {
		if err := guard(cur); err != nil {
			return nil, err
		}
	}
	eventID := uuid.Must(uuid.NewV7()).String()
	for round := 0; ; round++ {
		if err := s.cancelChildren(ctx, taskID, reason, actor, eventID); err != nil {
			return nil, err
		}
		// The children's cancellations do not move the parent's version;
		// close holds the parent to the expected one, allowing only its own
		// stop's pod_stopped (this round's or an earlier one's).
		t, err := s.close(ctx, taskID, expected, actor, "task cancelled", guard, func(cur *ipa.Task) ipa.NewEvent {
			return ipa.NewEvent{ID: eventID, Type: ipa.EventTaskCancelled, Data: ipa.TaskCancelledData{Reason: reason, Phase: cur.Phase}, CausationID: causationID}
		})
		if ipa.ErrorReason(err) == ipa.ReasonOpenChildren && round < maxCancelRounds {
			continue
		}
		if err == nil {
			// Tasks waiting for this one can never start: cancelled too.
			s.cancelDependents(ctx, taskID, actor, eventID)
		}
		return t, err
	}
}

// cancelChildren cancels every open child of the task (and theirs), with the
// parent's cancellation event id as causation. Children closed meanwhile are
// skipped.
func (s *TaskService) cancelChildren(ctx context.Context, parentID, reason, actor, causationID string) error {
	open := ipa.TaskFilter{ParentID: &parentID, Statuses: openStatuses}
	for {
		page, err := s.store.FindTasks(ctx, ipa.TaskQuery{Filter: open, Order: ipa.TaskOrder{Field: ipa.OrderCreatedAt}, Limit: dueBatch})
		if err != nil {
			return err
		}
		if len(page.Tasks) == 0 {
			return nil
		}
		for _, c := range page.Tasks {
			_, err := s.cancelTree(ctx, c.ID, reason, nil, actor, causationID, nil)
			switch ipa.ErrorReason(err) {
			case "", ipa.ReasonAlreadyCancelled, ipa.ReasonAlreadyCompleted:
			default:
				return err
			}
		}
	}
}

// errNotDue stops a deadline cancellation when the deadline moved meanwhile.
var errNotDue = errors.New("service: deadline not passed")

// CancelDue cancels, with reason "deadline exceeded", the open tasks whose
// deadline has passed (at most one batch per call, dueWorkers at a time),
// each through the same path as cancelTask: its pod stopped first, its open
// children cancelled too. It acts as DeadlineActor and needs no caller role. A task whose
// deadline moved, or that closed, meanwhile is left alone: the deadline is
// checked again in the closing transaction, so two servers sweeping the same
// database cancel a task once. Returns how many tasks it cancelled, and the
// store's error when it cannot read the deadlines; failures to cancel one
// task are logged and retried on the next call.
func (s *TaskService) CancelDue(ctx context.Context) (int, error) {
	now := s.now()
	due, err := s.store.DueTasks(ctx, now, dueBatch)
	if err != nil || len(due) == 0 {
		return 0, err
	}
	ctx = ipa.WithActor(ctx, ipa.Actor{ID: DeadlineActor, Role: ipa.RoleAdmin})
	guard := func(t *ipa.Task) error {
		if t.Deadline == nil || t.Deadline.After(now) {
			return errNotDue
		}
		return nil
	}
	var (
		n    atomic.Int64
		next = make(chan *ipa.Task)
		wg   sync.WaitGroup
	)
	for range min(dueWorkers, len(due)) {
		wg.Go(func() {
			for t := range next {
				if s.cancelDue(ctx, t, guard) {
					n.Add(1)
				}
			}
		})
	}
	for _, t := range due {
		if ctx.Err() != nil {
			break
		}
		next <- t
	}
	close(next)
	wg.Wait()
	return int(n.Load()), ctx.Err()
}

// cancelDue cancels one task past its deadline (CancelDue) and reports
// whether it did; a task left alone for a reason CancelDue names is not
// logged, other failures are.
func (s *TaskService) cancelDue(ctx context.Context, t *ipa.Task, guard func(*ipa.Task) error) bool {
	tctx := ipa.WithCorrelationID(ctx, "deadline-"+uuid.NewString())
	_, err := s.cancelTree(tctx, t.ID, DeadlineReason, nil, DeadlineActor, "", guard)
	switch {
	case err == nil:
		s.log.InfoContext(tctx, "task deadline exceeded", "task_id", t.ID, "deadline", t.Deadline.Format(time.RFC3339Nano))
		return true
	case errors.Is(err, errNotDue), ipa.ErrorReason(err) == ipa.ReasonAlreadyCancelled, ipa.ErrorReason(err) == ipa.ReasonAlreadyCompleted:
	case ctx.Err() != nil:
	default:
		s.log.WarnContext(tctx, "cancel task past its deadline", "task_id", t.ID, "err", err)
	}
	return false
}

// ChildrenInput asks for one page of a task's children: forward with First
// and After, or backward with Last and Before.
type ChildrenInput struct {
	Filter ipa.TaskFilter
	Order  ipa.TaskOrder
	First  *int
	After  *string
	Last   *int
	Before *string
}

// ListChildren returns one page of the task's children: ListTasks with
// filter.parentId, so the same orders, cursors and checks. Requires VIEWER.
// Returns EINVALID (INVALID_ARGUMENT) when first/after and last/before are
// mixed, for sizes out of 1..1000, or a cursor of another list. A size left
// out is DefaultPageSize, in the direction the other arguments name.
func (s *TaskService) ListChildren(ctx context.Context, parentID string, in ChildrenInput) (TaskList, error) {
	in.Filter.ParentID = &parentID
	list := ListTasksInput{Filter: in.Filter, Order: in.Order, First: DefaultPageSize, After: in.After}
	if in.First != nil {
		list.First = *in.First
	}
	if in.Last != nil || in.Before != nil {
		if in.First != nil || in.After != nil {
			if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
				return TaskList{}, err
			}
			return TaskList{}, invalidArg("Use first/after or last/before, not both.")
		}
		last := DefaultPageSize
		if in.Last != nil {
			last = *in.Last
		}
		list = ListTasksInput{Filter: in.Filter, Order: in.Order, Last: &last, Before: in.Before}
	}
	return s.ListTasks(ctx, list)
}
