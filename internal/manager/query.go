package manager

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// Page size bounds for every list.
const (
	MaxPageSize     = 1000
	DefaultPageSize = 100
)

// Task returns the task with this id. Requires VIEWER. Returns ENOTFOUND
// (TASK_NOT_FOUND) when there is none, also for a malformed id.
func (m *Manager) Task(ctx context.Context, id string) (*ipa.Task, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	return m.store.GetTask(ctx, id)
}

// ListTasksInput asks for one page of tasks.
type ListTasksInput struct {
	Filter ipa.TaskFilter
	Order  ipa.TaskOrder
	First  int
	After  *string // endCursor of the previous page
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
func (m *Manager) ListTasks(ctx context.Context, in ListTasksInput) (TaskList, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return TaskList{}, err
	}
	if in.First < 1 || in.First > MaxPageSize {
		return TaskList{}, invalidArg("first must be between 1 and %d.", MaxPageSize)
	}
	if err := validateFilter(in.Filter); err != nil {
		return TaskList{}, err
	}
	if in.Order.Field == "" {
		in.Order = ipa.DefaultTaskOrder
	}
	shape := queryShape(in.Filter, in.Order)
	q := store.TaskQuery{Filter: in.Filter, Order: in.Order, Limit: in.First}
	if in.After != nil {
		var c taskCursor
		if err := m.cursors.Decode(shape, *in.After, &c); err != nil {
			return TaskList{}, invalidArg("after is not a cursor of this list; use an endCursor returned with the same filter and order.")
		}
		q.After = &store.TaskKey{Time: time.Unix(0, c.Nanos).UTC(), Title: c.Title, ID: c.ID}
	}
	page, err := m.store.FindTasks(ctx, q)
	if err != nil {
		return TaskList{}, err
	}
	out := TaskList{Tasks: page.Tasks, HasNextPage: page.HasMore, HasPrevious: in.After != nil}
	for _, t := range page.Tasks {
		c := taskCursor{ID: t.ID}
		switch in.Order.Field {
		case ipa.OrderCreatedAt:
			c.Nanos = t.CreatedAt.UnixNano()
		case ipa.OrderUpdatedAt:
			c.Nanos = t.UpdatedAt.UnixNano()
		case ipa.OrderTitle:
			c.Title = t.Title
		}
		s, err := m.cursors.Encode(shape, c)
		if err != nil {
			return TaskList{}, err
		}
		out.Cursors = append(out.Cursors, s)
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

func validateFilter(f ipa.TaskFilter) error {
	if f.TitleContains != nil && len(*f.TitleContains) > 4*ipa.MaxTitleChars {
		return invalidArg("titleContains is too long.")
	}
	for _, s := range []*string{f.TitleContains, f.CreatedBy, f.Runtime} {
		if s != nil && strings.ContainsRune(*s, 0) {
			return invalidArg("Filter strings must not contain NUL characters.")
		}
	}
	for _, s := range f.Statuses {
		if !s.Valid() {
			return invalidArg("Unknown status %q.", s)
		}
	}
	for _, p := range f.Phases {
		if !p.Valid() {
			return invalidArg("Unknown phase %q.", p)
		}
	}
	return nil
}

// CountTasks returns how many tasks match the filter. Requires VIEWER.
func (m *Manager) CountTasks(ctx context.Context, f ipa.TaskFilter) (int, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return 0, err
	}
	if err := validateFilter(f); err != nil {
		return 0, err
	}
	n, err := m.store.CountTasks(ctx, f)
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
func (m *Manager) TaskEvents(ctx context.Context, taskID string, first int, after *string, types []string) (EventList, error) {
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
		if err := m.cursors.Decode(shape, *after, &from); err != nil {
			return EventList{}, invalidArg("after is not a cursor of this task's events.")
		}
	}
	evs, err := m.store.ReadEvents(ctx, ipa.EventQuery{TaskID: taskID, After: from, Types: types, Limit: first + 1})
	if err != nil {
		return EventList{}, err
	}
	out := EventList{HasPrevious: after != nil}
	if len(evs) > first {
		evs, out.HasNextPage = evs[:first], true
	}
	out.Events = evs
	for _, e := range evs {
		s, err := m.cursors.Encode(shape, e.Version)
		if err != nil {
			return EventList{}, err
		}
		out.Cursors = append(out.Cursors, s)
	}
	return out, nil
}

// CountEvents returns how many events of the given types the task has.
func (m *Manager) CountEvents(ctx context.Context, taskID string, types []string) (int, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return 0, err
	}
	n, err := m.store.CountEvents(ctx, taskID, types)
	return int(n), err
}

// ParsePosition reads a global position written as a decimal string. Returns
// EINVALID for anything else.
func ParsePosition(s string) (int64, error) {
	p, err := strconv.ParseInt(s, 10, 64)
	if err != nil || p < 0 {
		return 0, invalidArg("position must be a non-negative 64-bit integer written in decimal.")
	}
	return p, nil
}

// isNotFound reports whether err is the store's task-not-found error.
func isNotFound(err error) bool {
	var e *ipa.Error
	return errors.As(err, &e) && e.Code == ipa.ENOTFOUND
}
