package service

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// HistoryStore reads the event log by page and deletes closed tasks'
// streams (*store.Store).
type HistoryStore interface {
	PageEvents(ctx context.Context, q ipa.EventPageQuery) (ipa.EventPage, error)
	CountLogEvents(ctx context.Context, types []string) (int64, error)
	DeleteTask(ctx context.Context, id string) (ipa.Removed, error)
}

// Page is a Relay page request: First/After or Last/Before (After and
// Before may both narrow either). Nil means not given.
type Page struct {
	First, Last   *int
	After, Before *string
}

// size checks the page request and returns its size and whether it counts
// from the end. With neither First nor Last it is the first def.
// Returns EINVALID (INVALID_ARGUMENT) when both are given or either is
// outside 1..MaxPageSize.
func (p Page) size(def int) (n int, fromEnd bool, err error) {
	switch {
	case p.First != nil && p.Last != nil:
		return 0, false, invalidArg("Give first or last, not both.")
	case p.Last != nil:
		n, fromEnd = *p.Last, true
	case p.First != nil:
		n = *p.First
	default:
		n = def
	}
	if n < 1 || n > MaxPageSize {
		return 0, false, invalidArg("first and last must be between 1 and %d.", MaxPageSize)
	}
	return n, fromEnd, nil
}

// ListEventsInput asks for a page of the global event log (or of one task's
// events, by position). Cursors are positions: AfterPosition and the page
// cursors are interchangeable.
type ListEventsInput struct {
	Page
	Types  []string
	TaskID *string
}

// ListEvents returns a page of the global event log in position order,
// oldest first, optionally only some types or one task's events. The cursor
// of each event is its position. Requires VIEWER. Returns EINVALID
// (INVALID_ARGUMENT) for a bad page size or position.
func (s *TaskService) ListEvents(ctx context.Context, in ListEventsInput) (EventList, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return EventList{}, err
	}
	if s.history == nil {
		return EventList{}, errors.New("service: no history store")
	}
	n, fromEnd, err := in.size(DefaultPageSize)
	if err != nil {
		return EventList{}, err
	}
	if err := checkTypes(in.Types); err != nil {
		return EventList{}, err
	}
	q := ipa.EventPageQuery{Types: in.Types, Limit: n, Last: fromEnd, ByPosition: true}
	if in.TaskID != nil {
		if *in.TaskID == "" {
			return EventList{}, invalidArg("taskId must not be empty.")
		}
		q.TaskID = *in.TaskID
	}
	if q.After, err = optionalPosition("after", in.After); err != nil {
		return EventList{}, err
	}
	if q.Before, err = optionalPosition("before", in.Before); err != nil {
		return EventList{}, err
	}
	page, err := s.history.PageEvents(ctx, q)
	if err != nil {
		return EventList{}, err
	}
	out := pageOf(page, fromEnd, in.Page)
	for _, e := range out.Events {
		out.Cursors = append(out.Cursors, strconv.FormatInt(e.Position, 10))
	}
	return out, nil
}

// CountLogEvents returns how many events of the given types the log holds
// (one task's, when taskID is not empty). Requires VIEWER.
func (s *TaskService) CountLogEvents(ctx context.Context, taskID string, types []string) (int, error) {
	if taskID != "" {
		return s.CountEvents(ctx, taskID, types)
	}
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return 0, err
	}
	if s.history == nil {
		return 0, errors.New("service: no history store")
	}
	n, err := s.history.CountLogEvents(ctx, types)
	return int(n), err
}

// TaskEventsPage returns a page of the task's events by version, oldest
// first within the page, in either direction: the tail of a task's output
// is Last 50 of type pod_output. Requires VIEWER. Returns EINVALID for a bad
// page size or cursor.
func (s *TaskService) TaskEventsPage(ctx context.Context, taskID string, p Page, types []string) (EventList, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return EventList{}, err
	}
	if s.history == nil {
		return EventList{}, errors.New("service: no history store")
	}
	n, fromEnd, err := p.size(DefaultPageSize)
	if err != nil {
		return EventList{}, err
	}
	if err := checkTypes(types); err != nil {
		return EventList{}, err
	}
	shape := "events:" + taskID
	q := ipa.EventPageQuery{TaskID: taskID, Types: types, Limit: n, Last: fromEnd}
	for _, c := range []struct {
		name string
		in   *string
		out  **int64
	}{{"after", p.After, &q.After}, {"before", p.Before, &q.Before}} {
		if c.in == nil {
			continue
		}
		var v int64
		if err := s.cursors.Decode(shape, *c.in, &v); err != nil {
			return EventList{}, invalidArg("%s is not a cursor of this task's events.", c.name)
		}
		*c.out = &v
	}
	page, err := s.history.PageEvents(ctx, q)
	if err != nil {
		return EventList{}, err
	}
	out := pageOf(page, fromEnd, p)
	for _, e := range out.Events {
		cur, err := s.cursors.Encode(shape, e.Version)
		if err != nil {
			return EventList{}, err
		}
		out.Cursors = append(out.Cursors, cur)
	}
	return out, nil
}

// pageOf sets a page's Relay flags: the side the page was read towards
// knows whether more follow; the other side has more when a cursor bounds
// it (the cursor's own event is there).
func pageOf(page ipa.EventPage, fromEnd bool, p Page) EventList {
	out := EventList{Events: page.Events}
	if fromEnd {
		out.HasPrevious, out.HasNextPage = page.HasMore, p.Before != nil
	} else {
		out.HasNextPage, out.HasPrevious = page.HasMore, p.After != nil
	}
	return out
}

func optionalPosition(name string, s *string) (*int64, error) {
	if s == nil {
		return nil, nil
	}
	p, err := ParsePosition(*s)
	if err != nil {
		return nil, invalidArg("%s must be a position: a non-negative 64-bit integer written in decimal.", name)
	}
	return &p, nil
}

func checkTypes(types []string) error {
	for _, t := range types {
		if strings.ContainsRune(t, 0) {
			return invalidArg("Event types must not contain NUL characters.")
		}
	}
	return nil
}

// ArchiveTask archives a closed task: it is hidden from task lists and
// counts unless the filter asks for archived tasks. Archiving an archived
// task changes nothing. Requires OPERATOR. Returns ENOTFOUND, ECONFLICT
// (NOT_CLOSED) for an open task.
func (s *TaskService) ArchiveTask(ctx context.Context, taskID string) (*ipa.Task, error) {
	actor, err := ipa.RequireRole(ctx, ipa.RoleOperator)
	if err != nil {
		return nil, err
	}
	t, _, err := s.writer.Append(ctx, eventlog.Append{TaskID: taskID, Actor: actor.ID, Decide: func(cur *ipa.Task) ([]ipa.NewEvent, error) {
		ev, ok, err := ipa.Archive(cur)
		if err != nil || !ok {
			return nil, err
		}
		return []ipa.NewEvent{ev}, nil
	}})
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "task archived", "task_id", taskID, "actor", actor.ID, "correlation_id", ipa.CorrelationID(ctx))
	return t, nil
}

// DeleteTask deletes a closed task's whole stream: its events, its row and
// what refers to it. Its events' positions are not reused. Requires ADMIN.
// Returns ENOTFOUND, ECONFLICT (NOT_CLOSED) for an open task.
func (s *TaskService) DeleteTask(ctx context.Context, taskID string) error {
	actor, err := ipa.RequireRole(ctx, ipa.RoleAdmin)
	if err != nil {
		return err
	}
	if s.history == nil {
		return errors.New("service: no history store")
	}
	removed, err := s.history.DeleteTask(ctx, taskID)
	if err != nil {
		return err
	}
	s.pods.Forget(taskID)
	if s.ws != nil {
		if err := s.ws.Remove(taskID); err != nil {
			s.log.WarnContext(ctx, "workspace of a deleted task not removed", "task_id", taskID, "error", err)
		}
	}
	if s.arts != nil {
		if err := s.arts.Remove(taskID); err != nil {
			s.log.WarnContext(ctx, "artifacts of a deleted task not removed", "task_id", taskID, "error", err)
		}
	}
	s.log.InfoContext(ctx, "task deleted", "task_id", taskID, "events", removed.Events, "actor", actor.ID,
		"correlation_id", ipa.CorrelationID(ctx))
	return nil
}

// ParseRetention reads a retention period: a Go duration (90m, 36h) or a
// whole number of days (30d). Returns an error for anything else, or a
// period that is not positive.
func ParseRetention(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n > int64(1<<63-1)/int64(24*time.Hour) {
			return 0, errors.New("want a duration such as 30d, 36h or 90m")
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, errors.New("want a duration such as 30d, 36h or 90m")
		}
	}
	if d <= 0 {
		return 0, errors.New("the duration must be positive")
	}
	return d, nil
}
