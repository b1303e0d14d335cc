package ipa

// Retention: closed tasks can be archived (hidden from lists by default) and
// deleted (their whole stream removed).

// EventTaskArchived is appended when a closed task is archived.
const EventTaskArchived = "task_archived"

// ReasonNotClosed refines ECONFLICT: archiving or deleting an open task.
const ReasonNotClosed = "NOT_CLOSED"

// TaskArchivedData is the data of task_archived.
type TaskArchivedData struct {
	Status TaskStatus `json:"status"` // how the task was closed
}

// Archive returns the task_archived event for t. Returns ECONFLICT
// (NOT_CLOSED) when t is still open; an already archived task needs no
// event (ok is false).
func Archive(t *Task) (ev NewEvent, ok bool, err error) {
	if !t.Status.Closed() {
		return NewEvent{}, false, NotClosedError()
	}
	if t.Archived {
		return NewEvent{}, false, nil
	}
	return NewEvent{Type: EventTaskArchived, Data: TaskArchivedData{Status: t.Status}}, true, nil
}

// NotClosedError is the refusal to archive or delete an open task.
func NotClosedError() *Error {
	return Errorf(ECONFLICT, ReasonNotClosed, "Only a completed or cancelled task can be archived or deleted.")
}
