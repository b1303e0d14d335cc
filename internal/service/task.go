package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/ipa-dev/ipa/internal/artifact"
	"github.com/ipa-dev/ipa/internal/cursor"
	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/workspace"
)

// DefaultRuntime is the runtime of a task created without one.
const DefaultRuntime = "demo"

// TaskConfig is what a TaskService is built from.
type TaskConfig struct {
	Store         TaskReader    // required
	History       HistoryStore  // event pages and deletes; required by those use cases
	Writer        EventWriter   // required
	Pods          Pods          // required
	Cursors       *cursor.Codec // required: signs list cursors
	Runtimes      []ipa.Runtime
	DefaultPolicy ipa.RestartPolicy // zero: ipa.DefaultRestartPolicy()
	Metrics       *Metrics          // may be nil
	Logger        *slog.Logger      // default slog.Default()
	Now           func() time.Time  // default time.Now
	// Workspaces are the tasks' workspaces, removed with their tasks; nil:
	// none are kept.
	Workspaces *workspace.Dirs
	// Artifacts are the tasks' artifacts, removed with their tasks; nil:
	// none are kept.
	Artifacts *artifact.Store
	// Gates, when set, turns a move into a phase the task lists in its
	// approvals into a request for approval.
	Gates Gates
}

// Gates decides moves into approval-gated phases: gated reports that the
// move opened (or found open) an approval request instead of happening.
type Gates interface {
	Gate(ctx context.Context, taskID, actor string, to ipa.Phase, note string, expected *int64) (t *ipa.Task, gated bool, err error)
}

// TaskService creates, lists, moves and closes tasks. It is safe for
// concurrent use.
type TaskService struct {
	store    TaskReader
	history  HistoryStore
	writer   EventWriter
	pods     Pods
	cursors  *cursor.Codec
	runtimes map[string]ipa.Runtime
	names    []string
	policy   ipa.RestartPolicy
	metrics  *Metrics
	log      *slog.Logger
	now      func() time.Time
	ws       *workspace.Dirs
	arts     *artifact.Store
	gates    Gates
}

// NewTaskService returns a TaskService. Returns an error when a required
// dependency is missing or the default restart policy is invalid.
func NewTaskService(cfg TaskConfig) (*TaskService, error) {
	if cfg.Store == nil || cfg.Writer == nil || cfg.Pods == nil || cfg.Cursors == nil {
		return nil, errors.New("service: a TaskService needs a store, a writer, pods and a cursor codec")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DefaultPolicy == (ipa.RestartPolicy{}) {
		cfg.DefaultPolicy = ipa.DefaultRestartPolicy()
	}
	if err := cfg.DefaultPolicy.Validate(); err != nil {
		return nil, fmt.Errorf("service: default restart policy: %w", err)
	}
	now := cfg.Now
	s := &TaskService{
		store:    cfg.Store,
		history:  cfg.History,
		writer:   cfg.Writer,
		pods:     cfg.Pods,
		cursors:  cfg.Cursors,
		runtimes: make(map[string]ipa.Runtime, len(cfg.Runtimes)),
		policy:   cfg.DefaultPolicy,
		metrics:  cfg.Metrics,
		log:      cfg.Logger,
		now:      func() time.Time { return now().UTC() },
		ws:       cfg.Workspaces,
		arts:     cfg.Artifacts,
		gates:    cfg.Gates,
	}
	for _, rt := range cfg.Runtimes {
		s.runtimes[rt.Name] = rt
		s.names = append(s.names, rt.Name)
	}
	sort.Strings(s.names)
	return s, nil
}

// Runtimes lists the runtimes the server can start, by name. Requires VIEWER.
func (s *TaskService) Runtimes(ctx context.Context) ([]ipa.RuntimeInfo, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	out := make([]ipa.RuntimeInfo, 0, len(s.names))
	for _, n := range s.names {
		rt := s.runtimes[n]
		out = append(out, ipa.RuntimeInfo{
			Name:            rt.Name,
			Description:     rt.Description,
			ProtocolVersion: rt.ProtocolVersion,
			ConfigSchema:    rt.ConfigSchema,
			ExampleConfig:   rt.ExampleConfig,
		})
	}
	return out, nil
}

// CreateTask validates the input and creates the task: its stream, its
// task_created event and its row, in one transaction. With an idempotency key
// already used by the same actor it returns the first task and creates
// nothing. When AutoStart is set it then starts the pod (trigger
// auto_start); a pod that fails to start does not undo the task, nor fail the
// call: the task is committed, so a client that retried would make a second
// one. The failure is recorded as the pod's crash (start_failed), which the
// returned task shows.
// Requires OPERATOR, and the runtime's own role when it has one (exec:
// ADMIN by default). Returns EINVALID (INVALID_TITLE, INVALID_ARGUMENT) for
// bad input, and the runtime's refusal (FAILED_PRECONDITION: exec without
// its required sandbox) for AutoStart on a runtime that cannot start here.
func (s *TaskService) CreateTask(ctx context.Context, in ipa.CreateTaskInput) (*ipa.Task, error) {
	actor, err := ipa.RequireRole(ctx, ipa.RoleOperator)
	if err != nil {
		return nil, err
	}
	data, err := s.validateCreate(in)
	if err != nil {
		return nil, err
	}
	if err := requireRuntimeRole(ctx, s.runtimes[data.Runtime]); err != nil {
		return nil, err
	}
	// A pod this server refuses to start (exec with the sandbox required
	// and no working bwrap: FAILED_PRECONDITION) is refused before the
	// task exists, as startPod refuses it, rather than created only to
	// crash at once.
	if in.AutoStart != nil && *in.AutoStart && s.runtimes[data.Runtime].Unavailable != nil {
		return nil, s.runtimes[data.Runtime].Unavailable
	}
	if err := s.checkParentDepth(ctx, data.ParentID); err != nil {
		return nil, err
	}
	if len(in.DependsOn) > 0 {
		if data.DependsOn, err = s.checkDependsOn(ctx, "", in.DependsOn); err != nil {
			return nil, err
		}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	res, err := s.writer.CreateTask(ctx, ipa.CreateTaskRequest{
		TaskID:         id.String(),
		Created:        data,
		Actor:          actor.ID,
		CorrelationID:  ipa.CorrelationID(ctx),
		IdempotencyKey: data.IdempotencyKey,
		Now:            s.now(),
	})
	if err != nil {
		return nil, err
	}
	if res.Existing {
		return res.Task, nil
	}
	s.metrics.taskCreated(res.Task.Runtime)
	s.log.InfoContext(ctx, "task created", "task_id", res.Task.ID, "runtime", res.Task.Runtime,
		"actor", actor.ID, "correlation_id", ipa.CorrelationID(ctx))
	if in.AutoStart != nil && *in.AutoStart {
		if _, err := s.pods.StartPod(ctx, res.Task, ipa.TriggerAutoStart, res.Events[0].ID); err != nil {
			s.log.WarnContext(ctx, "auto start failed", "task_id", res.Task.ID, "runtime", res.Task.Runtime,
				"err", err, "correlation_id", ipa.CorrelationID(ctx))
		}
		t, err := s.store.GetTask(ctx, res.Task.ID)
		if err != nil {
			return res.Task, nil // committed: the row as created is still the truth of the create
		}
		return t, nil
	}
	return res.Task, nil
}

// validateCreate checks every field of a create and returns the event data.
func (s *TaskService) validateCreate(in ipa.CreateTaskInput) (ipa.TaskCreatedData, error) {
	var d ipa.TaskCreatedData
	title, err := ipa.NormalizeTitle(in.Title)
	if err != nil {
		return d, err
	}
	d.Title = title
	if in.Description != nil {
		if err := validDescription(*in.Description); err != nil {
			return d, err
		}
		d.Description = *in.Description
	}
	d.Runtime = DefaultRuntime
	if in.Runtime != nil && *in.Runtime != "" {
		if err := ipa.CheckLine("The runtime name", *in.Runtime); err != nil {
			return d, err
		}
		d.Runtime = *in.Runtime
	}
	rt, ok := s.runtimes[d.Runtime]
	if !ok {
		return d, invalidArg("Unknown runtime %q; known runtimes: %s.", d.Runtime, strings.Join(s.names, ", "))
	}
	if d.RuntimeConfig, err = jsonObject("runtimeConfig", in.RuntimeConfig, ipa.MaxRuntimeConfigByte); err != nil {
		return d, err
	}
	if rt.ValidateConfig != nil {
		if err := rt.ValidateConfig(d.RuntimeConfig); err != nil {
			msg := err.Error()
			var e *ipa.Error
			if errors.As(err, &e) {
				msg = e.Message // not "BAD_USER_INPUT/INVALID_ARGUMENT: …" twice over
				if e.Reason == ipa.ReasonInvalidRuntimeConfig {
					// A schema's refusal keeps its reason and failing path.
					out := *e
					out.Message = fmt.Sprintf("runtimeConfig for %s: %s", d.Runtime, msg)
					return d, &out
				}
			}
			return d, invalidArg("runtimeConfig for %s: %s", d.Runtime, msg)
		}
	}
	if d.Metadata, err = jsonObject("metadata", in.Metadata, ipa.MaxMetadataBytes); err != nil {
		return d, err
	}
	d.RestartPolicy = in.RestartPolicy.Apply(s.policy)
	if err := d.RestartPolicy.Validate(); err != nil {
		return d, err
	}
	if in.IdempotencyKey != nil {
		k := *in.IdempotencyKey
		if err := ipa.CheckLine("idempotencyKey", k); err != nil {
			return d, err
		}
		if k == "" || len(k) > ipa.MaxIdempotencyKey {
			return d, invalidArg("idempotencyKey must be 1 to %d bytes of UTF-8.", ipa.MaxIdempotencyKey)
		}
		d.IdempotencyKey = k
	}
	if d.Labels, err = ipa.ParseLabels(in.Labels); err != nil {
		return d, err
	}
	if len(d.Labels) == 0 {
		d.Labels = nil // task_created carries labels only when there are some
	}
	if in.ParentID != nil {
		d.ParentID = *in.ParentID
	}
	d.Deadline = in.Deadline
	if d.Budget, err = in.Budget.Budget(); err != nil {
		return d, err
	}
	for _, p := range in.Approvals {
		if p == ipa.PhaseCompleted || p == ipa.PhaseCancelled || !p.Valid() {
			return d, invalidArg("approvals lists phases a task moves into with transitionPhase (SPEC_CLARIFICATION to REVIEW), not %s.", p)
		}
		if !slices.Contains(d.Approvals, p) {
			d.Approvals = append(d.Approvals, p)
		}
	}
	if in.Priority != nil {
		if err := checkPriority(*in.Priority); err != nil {
			return d, err
		}
		d.Priority = *in.Priority
	}
	return d, nil
}

// Task returns the task with this id. Requires VIEWER. Returns ENOTFOUND
// (TASK_NOT_FOUND) when there is none, also for a malformed id.
func (s *TaskService) Task(ctx context.Context, id string) (*ipa.Task, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	return s.store.GetTask(ctx, id)
}

// ListTasksInput asks for one page of tasks.
type ListTasksInput struct {
	Filter ipa.TaskFilter
	Order  ipa.TaskOrder
	First  int
	After  *string // endCursor of the previous page
	// Last, instead of First, takes the last rows before Before (or of the
	// whole list); the page is still in Order.
	Last   *int
	Before *string // startCursor of the next page
}

// TaskList is one page of tasks, each with its cursor.
type TaskList struct {
	Tasks       []*ipa.Task
	Cursors     []string
	HasNextPage bool
	HasPrevious bool
}

// taskCursor is what a task list cursor carries: the last row's sort key.
type taskCursor struct {
	Nanos int64  `json:"t,omitempty"`
	Title string `json:"s,omitempty"`
	ID    string `json:"id"`
}

// ListTasks returns one page of tasks in a total order using keyset
// pagination. Requires VIEWER. Returns EINVALID (INVALID_ARGUMENT) when First
// is outside 1..1000 or After is not a cursor of the same filter and order.
func (s *TaskService) ListTasks(ctx context.Context, in ListTasksInput) (TaskList, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return TaskList{}, err
	}
	n, fromEnd := in.First, in.Last != nil
	if fromEnd {
		if in.First != 0 {
			return TaskList{}, invalidArg("Give first or last, not both.")
		}
		n = *in.Last
	}
	if n < 1 || n > MaxPageSize {
		return TaskList{}, invalidArg("first and last must be between 1 and %d.", MaxPageSize)
	}
	if err := validateFilter(in.Filter); err != nil {
		return TaskList{}, err
	}
	if in.Order.Field == "" {
		in.Order = ipa.DefaultTaskOrder
	}
	shape := queryShape(in.Filter, in.Order)
	q := ipa.TaskQuery{Filter: in.Filter, Order: in.Order, Limit: n, Last: fromEnd}
	for _, b := range []struct {
		name string
		in   *string
		out  **ipa.TaskKey
	}{{"after", in.After, &q.After}, {"before", in.Before, &q.Before}} {
		if b.in == nil {
			continue
		}
		var c taskCursor
		if err := s.cursors.Decode(shape, *b.in, &c); err != nil {
			return TaskList{}, invalidArg("%s is not a cursor of this list; use a cursor returned with the same filter and order.", b.name)
		}
		*b.out = &ipa.TaskKey{Time: time.Unix(0, c.Nanos).UTC(), Title: c.Title, ID: c.ID}
	}
	page, err := s.store.FindTasks(ctx, q)
	if err != nil {
		return TaskList{}, err
	}
	// The side read towards knows whether more rows follow; the other side
	// has more when a cursor bounds it (the cursor's own row is there).
	out := TaskList{Tasks: page.Tasks, HasNextPage: page.HasMore, HasPrevious: in.After != nil}
	if fromEnd {
		out.HasNextPage, out.HasPrevious = in.Before != nil, page.HasMore
	}
	out.Cursors, err = s.taskCursors(shape, in.Order, page.Tasks)
	return out, err
}

// taskCursors returns each task's cursor in a list of this shape and order:
// its sort key and id, signed.
func (s *TaskService) taskCursors(shape string, order ipa.TaskOrder, tasks []*ipa.Task) ([]string, error) {
	out := make([]string, 0, len(tasks))
	for _, t := range tasks {
		c := taskCursor{ID: t.ID}
		switch order.Field {
		case ipa.OrderCreatedAt:
			c.Nanos = t.CreatedAt.UnixNano()
		case ipa.OrderUpdatedAt:
			c.Nanos = t.UpdatedAt.UnixNano()
		case ipa.OrderTitle:
			c.Title = t.Title
		}
		cur, err := s.cursors.Encode(shape, c)
		if err != nil {
			return nil, err
		}
		out = append(out, cur)
	}
	return out, nil
}

// queryShape fingerprints a filter and order, so a cursor only works for the
// list it came from.
func queryShape(f ipa.TaskFilter, o ipa.TaskOrder) string {
	b, _ := json.Marshal(struct {
		F ipa.TaskFilter
		O ipa.TaskOrder
	}{f, o})
	sum := sha256.Sum256(b)
	return "tasks:" + hex.EncodeToString(sum[:8])
}

// CountTasks returns how many tasks match the filter. Requires VIEWER.
func (s *TaskService) CountTasks(ctx context.Context, f ipa.TaskFilter) (int, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return 0, err
	}
	if err := validateFilter(f); err != nil {
		return 0, err
	}
	n, err := s.store.CountTasks(ctx, f)
	return int(n), err
}

// EventList is one page of a task's events.
type EventList struct {
	Events      []ipa.Event
	Cursors     []string
	HasNextPage bool
	HasPrevious bool
}

// TaskEvents returns a page of the task's events, oldest first, optionally
// only the given types. Requires VIEWER. Returns EINVALID for a bad first or
// cursor.
func (s *TaskService) TaskEvents(ctx context.Context, taskID string, first int, after *string, types []string) (EventList, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return EventList{}, err
	}
	if first < 1 || first > MaxPageSize {
		return EventList{}, invalidArg("first must be between 1 and %d.", MaxPageSize)
	}
	for _, t := range types {
		if strings.ContainsRune(t, 0) {
			return EventList{}, invalidArg("Event types must not contain NUL characters.")
		}
	}
	shape := "events:" + taskID
	var from int64
	if after != nil {
		if err := s.cursors.Decode(shape, *after, &from); err != nil {
			return EventList{}, invalidArg("after is not a cursor of this task's events.")
		}
	}
	evs, err := s.store.ReadEvents(ctx, ipa.EventQuery{TaskID: taskID, After: from, Types: types, Limit: first + 1})
	if err != nil {
		return EventList{}, err
	}
	out := EventList{HasPrevious: after != nil}
	if len(evs) > first {
		evs, out.HasNextPage = evs[:first], true
	}
	out.Events = evs
	for _, e := range evs {
		cur, err := s.cursors.Encode(shape, e.Version)
		if err != nil {
			return EventList{}, err
		}
		out.Cursors = append(out.Cursors, cur)
	}
	return out, nil
}

// CountEvents returns how many events of the given types the task has.
// Requires VIEWER.
func (s *TaskService) CountEvents(ctx context.Context, taskID string, types []string) (int, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return 0, err
	}
	n, err := s.store.CountEvents(ctx, taskID, types)
	return int(n), err
}

// TransitionPhase moves the task to another phase under the phase rules.
// Requires OPERATOR. Returns ENOTFOUND, ECONFLICT (ALREADY_COMPLETED,
// ALREADY_CANCELLED, INVALID_TRANSITION, VERSION_CONFLICT), EINVALID.
func (s *TaskService) TransitionPhase(ctx context.Context, taskID string, to ipa.Phase, note *string, expected *int64) (*ipa.Task, error) {
	actor, err := ipa.RequireRole(ctx, ipa.RoleOperator)
	if err != nil {
		return nil, err
	}
	n, err := optionalText("The note", note)
	if err != nil {
		return nil, err
	}
	if s.gates != nil {
		// A move into a phase the task gates opens an approval instead.
		if t, gated, err := s.gates.Gate(ctx, taskID, actor.ID, to, n, expected); gated || err != nil {
			return t, err
		}
	}
	t, _, err := s.writer.Append(ctx, eventlog.Append{TaskID: taskID, Expected: expected, Actor: actor.ID, Decide: func(cur *ipa.Task) ([]ipa.NewEvent, error) {
		ev, err := ipa.PhaseChange(cur, to, n, "")
		if err != nil {
			return nil, err
		}
		return []ipa.NewEvent{ev}, nil
	}})
	return t, err
}

// CompleteTask stops a running pod, then closes the task as completed.
// Requires OPERATOR. Returns ENOTFOUND, ECONFLICT (ALREADY_COMPLETED,
// ALREADY_CANCELLED, VERSION_CONFLICT).
func (s *TaskService) CompleteTask(ctx context.Context, taskID string, expected *int64) (*ipa.Task, error) {
	actor, err := ipa.RequireRole(ctx, ipa.RoleOperator)
	if err != nil {
		return nil, err
	}
	// Refused before the pod is stopped; the store checks again when the
	// task closes, so a child created in between is caught too.
	if err := s.refuseOpenChildren(ctx, taskID); err != nil {
		return nil, err
	}
	return s.close(ctx, taskID, expected, actor.ID, "task completed", nil, func(cur *ipa.Task) ipa.NewEvent {
		return ipa.NewEvent{Type: ipa.EventTaskCompleted, Data: ipa.TaskCompletedData{Phase: cur.Phase}}
	})
}

// CancelTask stops a running pod, then closes the task as cancelled with the
// reason. Requires OPERATOR. Returns EINVALID (MISSING_REASON) for a blank
// reason, ENOTFOUND, ECONFLICT (ALREADY_COMPLETED, ALREADY_CANCELLED,
// VERSION_CONFLICT).
func (s *TaskService) CancelTask(ctx context.Context, taskID, reason string, expected *int64) (*ipa.Task, error) {
	actor, err := ipa.RequireRole(ctx, ipa.RoleOperator)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(reason) == "" {
		return nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonMissingReason, "A reason is required to cancel a task.")
	}
	reason, err = optionalText("The reason", &reason)
	if err != nil {
		return nil, err
	}
	return s.cancelTree(ctx, taskID, reason, expected, actor.ID, "", nil)
}

// close checks the task is open (and at the expected version), stops its pod
// when one runs, then appends the closing event.
// guard, when not nil, is checked on the open task before the pod is
// stopped and again in the closing transaction; its error aborts the close.
//
// With an expected version the close is atomic with respect to it: the
// closing event is appended on the condition that, since that version, the
// stream holds nothing but the pod_stopped of this close's own stop (see
// versionSince). Anything else that landed meanwhile (a label change, a pod
// started by someone else, a crash) fails the close with VERSION_CONFLICT
// and the current version, as if it had landed before the check. The pod
// may then already be stopped: the contract has a close stop it first, and
// stopping is what a client asking to close wants anyway.
func (s *TaskService) close(ctx context.Context, taskID string, expected *int64, actor, stopReason string, guard func(*ipa.Task) error, event func(*ipa.Task) ipa.NewEvent) (*ipa.Task, error) {
	cur, _, err := s.openSince(ctx, taskID, expected, stopReason)
	if err != nil {
		return nil, err
	}
	if guard != nil {
		if err := guard(cur); err != nil {
			return nil, err
		}
	}
	if err := s.pods.StopPod(ctx, taskID, stopReason); err != nil && !errors.Is(err, ipa.ErrPodNotRunning) {
		return nil, err
	}
	decide := func(cur *ipa.Task) ([]ipa.NewEvent, error) {
		if err := ipa.ClosedTaskError(cur.Status); err != nil {
			return nil, err
		}
		if guard != nil {
			if err := guard(cur); err != nil {
				return nil, err
			}
		}
		return []ipa.NewEvent{event(cur)}, nil
	}
	var t *ipa.Task
	for attempt := 0; ; attempt++ {
		// The stop appended pod events: the version to append at is the
		// client's plus those, and nothing else.
		_, at, err := s.openSince(ctx, taskID, expected, stopReason)
		if err != nil {
			return nil, err
		}
		t, _, err = s.writer.Append(ctx, eventlog.Append{TaskID: taskID, Expected: at, Actor: actor, Decide: decide})
		if err != nil && at != nil && ipa.ErrorReason(err) == ipa.ReasonVersionConflict {
			if attempt < maxCloseRetries {
				// Something landed between the read and the append: whether
				// it is this close's own pod_stopped (a stop carried out by
				// another instance may record it late) is looked at again.
				continue
			}
			// The conflict names the version the client gave, not the
			// one this close last tried to append at.
			var e *ipa.Error
			if errors.As(err, &e) {
				if cur, ok := e.Extensions["currentVersion"].(int64); ok {
					return nil, ipa.VersionConflict(*expected, cur)
				}
			}
		}
		if err != nil {
			return nil, err
		}
		break
	}
	// A startPod that passed its checks before the close may have started a
	// pod between the stop above and the closing event; stop it too. After
	// the close no pod can start: pod_started is refused on a closed task.
	if err := s.pods.StopPod(ctx, taskID, stopReason); err != nil && !errors.Is(err, ipa.ErrPodNotRunning) {
		s.log.WarnContext(ctx, "stop pod of closed task", "task_id", taskID, "err", err)
	}
	s.pods.Forget(taskID)
	s.metrics.taskClosed(t)
	s.log.InfoContext(ctx, "task closed", "task_id", t.ID, "status", t.Status, "actor", actor,
		"correlation_id", ipa.CorrelationID(ctx))
	return t, nil
}

// maxCloseRetries bounds how often a close with an expected version looks
// again after its conditional append lost a race.
const maxCloseRetries = 5

// ownStopLimit bounds the events a close reads after the expected version:
// its own stops add one pod_stopped per attempt, far fewer than this.
const ownStopLimit = 16

// openSince returns the open task and, when expected is given, the version
// a close may append at: the current one, provided every event after
// expected is a pod_stopped of this close's own stop (its stop reason,
// recorded under this request's correlation id, or by the server itself when
// another instance carried the stop out). Otherwise it returns
// VERSION_CONFLICT naming the client's expected version and the current one.
// Without expected, at is nil (any version).
func (s *TaskService) openSince(ctx context.Context, taskID string, expected *int64, stopReason string) (cur *ipa.Task, at *int64, err error) {
	cur, err = openTask(ctx, s.store, taskID, nil)
	if err != nil || expected == nil {
		return cur, nil, err
	}
	v := cur.Version
	if v == *expected {
		return cur, &v, nil
	}
	if v < *expected {
		return nil, nil, ipa.VersionConflict(*expected, v)
	}
	evs, err := s.store.ReadEvents(ctx, ipa.EventQuery{TaskID: taskID, After: *expected, Limit: ownStopLimit})
	if err != nil {
		return nil, nil, err
	}
	if len(evs) == ownStopLimit {
		return nil, nil, ipa.VersionConflict(*expected, v)
	}
	corr := ipa.CorrelationID(ctx)
	for _, e := range evs {
		if !ownStop(e, stopReason, corr) {
			return nil, nil, ipa.VersionConflict(*expected, max(v, evs[len(evs)-1].Version))
		}
	}
	// Events read may be newer than the row read before them: all are
	// checked, so the newest of them is the version to append at.
	if n := len(evs); n > 0 {
		v = max(v, evs[n-1].Version)
	}
	return cur, &v, nil
}

// ownStop reports whether e is the pod_stopped a close's stop recorded.
func ownStop(e ipa.Event, stopReason, correlationID string) bool {
	if e.Type != ipa.EventPodStopped {
		return false
	}
	if e.CorrelationID != correlationID && e.ActorID != eventlog.SystemActor {
		return false
	}
	var d ipa.PodStoppedData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return false
	}
	return d.Reason == stopReason
}

// openTask returns the task when it exists, is open and (when expected is
// given) is at that version.
func openTask(ctx context.Context, r TaskReader, taskID string, expected *int64) (*ipa.Task, error) {
	cur, err := r.GetTask(ctx, taskID)
	if err != nil {
		return nil, err
	}
	if err := ipa.ClosedTaskError(cur.Status); err != nil {
		return nil, err
	}
	if expected != nil && *expected != cur.Version {
		return nil, ipa.VersionConflict(*expected, cur.Version)
	}
	return cur, nil
}
