package ipa

import "time"

// What the store is asked and answers: the write requests of the event log
// and the task list query. They live here, not in package store, so the
// layers above the store (services, event log, live feeds) speak the domain
// vocabulary and never import it.

// AnyVersion as an expected version skips the optimistic concurrency check.
const AnyVersion int64 = -1

// CreateTaskRequest creates a task's stream, its first event (task_created) and
// its row in one transaction.
type CreateTaskRequest struct {
	TaskID        string // a new UUID chosen by the caller
	Created       TaskCreatedData
	Actor         string
	CorrelationID string
	// IdempotencyKey, when not empty, is unique per Actor: a second create with
	// the same (Actor, key) creates nothing and returns the first task with
	// Existing set, also under concurrent identical requests.
	IdempotencyKey string
	Now            time.Time // event time; zero means now
}

// CreateTaskResult is what CreateTask did.
type CreateTaskResult struct {
	Task     *Task
	Events   []Event // empty when Existing
	Existing bool    // the idempotency key was seen before; nothing was written
}

// DecideFunc looks at the task's current row, inside the write transaction, and
// returns the events to append. Returning no events appends nothing. Returning
// an error rolls back this write (only: the transaction may be shared with
// other writes) and is passed back unchanged. It must be pure: it may run
// more than once, on the store's writer goroutine, and must not write
// through the store.
type DecideFunc func(current *Task) ([]NewEvent, error)

// AppendRequest appends events to an existing task's stream.
type AppendRequest struct {
	TaskID string
	// ExpectedVersion is the version the caller last saw, or AnyVersion. A
	// mismatch fails with VersionConflict and writes nothing.
	ExpectedVersion int64
	Decide          DecideFunc
	Actor           string
	CorrelationID   string
	// Now is the events' time. Zero (what the services pass) stamps them
	// inside the transaction, after the row lock, so a stream's occurredAt
	// never goes backwards.
	Now time.Time
}

// AppendResult is the task after the append and the events written.
type AppendResult struct {
	Task   *Task
	Events []Event
}

// TaskQuery asks for one page of tasks in a total order.
type TaskQuery struct {
	Filter TaskFilter
	Order  TaskOrder
	Limit  int      // rows to return; the store fetches Limit+1 to know if more follow
	After  *TaskKey // keyset: the page starts strictly after this key
	Before *TaskKey // keyset: the page ends strictly before this key
	// Last takes the last Limit rows of the range instead of the first
	// (still returned in Order); HasMore then says a row precedes them.
	Last bool
}

// TaskKey is a task's position in an order: the sort column's value and the id
// that breaks ties. Exactly one of the value fields is meaningful for an order.
type TaskKey struct {
	Time  time.Time // CREATED_AT / UPDATED_AT
	Title string    // TITLE
	ID    string
}

// TaskPage is one page of a task list.
type TaskPage struct {
	Tasks   []*Task
	HasMore bool // another row follows the last one in this order (precedes the first one, with Last)
}

// EventPageQuery asks for one page of events, in either direction, by
// keyset on the position (the global log) or the version (one stream).
type EventPageQuery struct {
	TaskID string // one stream; "" = the global log
	// ByPosition keys one stream's page by global position instead of
	// version (the global log is always keyed by position).
	ByPosition bool
	Types      []string // only these types; empty = all
	After      *int64   // the page starts strictly after this key
	Before     *int64   // the page ends strictly before this key
	Limit      int      // 1..10000 events
	// Last takes the last Limit events of the range instead of the first;
	// the page is still returned oldest first.
	Last bool
}

// EventPage is one page of events, oldest first.
type EventPage struct {
	Events []Event
	// HasMore: another event of the range follows the page (precedes it,
	// with Last).
	HasMore bool
}

// Removed is what a delete or prune removed (or, for a dry run, would).
type Removed struct {
	Tasks  int64
	Events int64
}
