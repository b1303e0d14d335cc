package ipa

import (
	"encoding/json"
	"strconv"
	"time"
)

// Event type names. They are part of the public contract; runtimes may add
// their own under the RuntimeEventPrefix.
const (
	EventTaskCreated            = "task_created"
	EventTaskCompleted          = "task_completed"
	EventTaskCancelled          = "task_cancelled"
	EventTaskUpdated            = "task_updated"
	EventPhaseChanged           = "phase_changed"
	EventPodStarted             = "pod_started"
	EventPodStopped             = "pod_stopped"
	EventPodCrashed             = "pod_crashed"
	EventPodRestartScheduled    = "pod_restart_scheduled"
	EventPodRestartLimitReached = "pod_restart_limit_reached"
	EventPodLost                = "pod_lost"
	EventPodReattached          = "pod_reattached"
	EventPodOutput              = "pod_output"
	EventPodPaused              = "pod_paused"
	EventPodResumed             = "pod_resumed"
	EventPodQueued              = "pod_queued"
	EventPodWaiting             = "pod_waiting"

	RuntimeEventPrefix = "runtime."
)

// StreamTypeTask is the type of every task's stream.
const StreamTypeTask = "task"

// Event is one committed fact in a task's stream.
type Event struct {
	ID            string
	TaskID        string // the stream id
	Version       int64  // 1, 2, 3… per stream, no gaps
	Position      int64  // global commit order, strictly increasing
	Type          string
	Data          json.RawMessage
	ActorID       string
	CorrelationID string
	CausationID   string
	OccurredAt    time.Time
}

// PositionString, ActorIDOrNil, CorrelationIDOrNil and CausationIDOrNil
// are the event as the API shows it: the position as a decimal string, and
// absent ids as null. They are methods so that the GraphQL layer binds them
// without resolvers, which it would run each in a goroutine of its own.
func (e *Event) PositionString() string { return strconv.FormatInt(e.Position, 10) }

// ActorIDOrNil is ActorID, nil when empty.
func (e *Event) ActorIDOrNil() *string { return nilIfEmpty(e.ActorID) }

// CorrelationIDOrNil is CorrelationID, nil when empty.
func (e *Event) CorrelationIDOrNil() *string { return nilIfEmpty(e.CorrelationID) }

// CausationIDOrNil is CausationID, nil when empty.
func (e *Event) CausationIDOrNil() *string { return nilIfEmpty(e.CausationID) }

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// NewEvent is an event about to be appended: the store assigns id, version,
// position and time.
type NewEvent struct {
	// ID, when set, is the event's id; otherwise the store picks one. A
	// caller that must name an event before it commits (as the causation of
	// others) chooses it.
	ID          string
	Type        string
	Data        any // marshalled to JSON; nil means {}
	CausationID string
}

// Event payloads. Their JSON field names are the event data clients see.

// TaskCreatedData is the data of task_created: everything needed to build the row.
type TaskCreatedData struct {
	Title          string          `json:"title"`
	Description    string          `json:"description"`
	Runtime        string          `json:"runtime"`
	RuntimeConfig  json.RawMessage `json:"runtimeConfig"`
	Metadata       json.RawMessage `json:"metadata"`
	RestartPolicy  RestartPolicy   `json:"restartPolicy"`
	IdempotencyKey string          `json:"idempotencyKey,omitempty"`
	Labels         Labels          `json:"labels,omitempty"`
	ParentID       string          `json:"parentId,omitempty"`
	Deadline       *time.Time      `json:"deadline,omitempty"`
	// Approvals are the phases a move into needs a person's approval.
	Approvals []Phase  `json:"approvals,omitempty"`
	Budget    *Budget  `json:"budget,omitempty"`
	Priority  int      `json:"priority,omitempty"`  // scheduling order of queued pods, higher first
	DependsOn []string `json:"dependsOn,omitempty"` // tasks that must be COMPLETED before its pod starts
}

// TaskUpdatedData is the data of task_updated: only the fields that changed
// (labels, when present, is the whole new set).
type TaskUpdatedData struct {
	Title         *string         `json:"title,omitempty"`
	Description   *string         `json:"description,omitempty"`
	Metadata      json.RawMessage `json:"metadata,omitempty"`
	Labels        *Labels         `json:"labels,omitempty"`
	RestartPolicy *RestartPolicy  `json:"restartPolicy,omitempty"`
	Deadline      *time.Time      `json:"deadline,omitempty"`
	// Budget, when present, is the whole new budget.
	Budget    *Budget   `json:"budget,omitempty"`
	Priority  *int      `json:"priority,omitempty"`
	DependsOn *[]string `json:"dependsOn,omitempty"` // the whole new list
}

// Empty reports whether the update changes nothing.
func (d TaskUpdatedData) Empty() bool {
	return d.Title == nil && d.Description == nil && d.Metadata == nil && d.Labels == nil &&
		d.RestartPolicy == nil && d.Deadline == nil && d.Budget == nil && d.Priority == nil && d.DependsOn == nil
}

// PhaseChangedData is the data of phase_changed.
type PhaseChangedData struct {
	From Phase  `json:"from"`
	To   Phase  `json:"to"`
	Note string `json:"note,omitempty"`
}

// TaskCancelledData is the data of task_cancelled.
type TaskCancelledData struct {
	Reason string `json:"reason"`
	Phase  Phase  `json:"phase"` // phase the task was in when cancelled
}

// TaskCompletedData is the data of task_completed.
type TaskCompletedData struct {
	Phase Phase `json:"phase"` // phase the task was in when completed
}

// EventQuery reads events in order.
type EventQuery struct {
	TaskID string   // stream to read; "" reads the global feed by position
	After  int64    // version (stream) or position (global) to start after
	Types  []string // only these types; empty = all
	Limit  int
	// Newest reads a stream backwards from its last event (After is ignored):
	// the last Limit events, newest first.
	Newest bool
}
