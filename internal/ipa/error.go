package ipa

import (
	"errors"
	"fmt"
)

// Error codes. They are the contract's extensions.code values.
const (
	EINVALID         = "BAD_USER_INPUT"
	ENOTFOUND        = "NOT_FOUND"
	ECONFLICT        = "CONFLICT"
	EUNAUTHENTICATED = "UNAUTHENTICATED"
	EFORBIDDEN       = "FORBIDDEN"
	EUNAVAILABLE     = "UNAVAILABLE"
	// EFAILEDPRECONDITION: the server cannot do it as configured (exec pods
	// under --sandbox required without a working bwrap).
	EFAILEDPRECONDITION = "FAILED_PRECONDITION"
	EINTERNAL           = "INTERNAL_SERVER_ERROR"
)

// Reasons refine a code; they are the contract's extensions.reason values.
const (
	ReasonInvalidTitle      = "INVALID_TITLE"
	ReasonMissingReason     = "MISSING_REASON"
	ReasonInvalidArgument   = "INVALID_ARGUMENT"
	ReasonTaskNotFound      = "TASK_NOT_FOUND"
	ReasonAlreadyCompleted  = "ALREADY_COMPLETED"
	ReasonAlreadyCancelled  = "ALREADY_CANCELLED"
	ReasonNotRunning        = "NOT_RUNNING"
	ReasonInvalidTransition = "INVALID_TRANSITION"
	ReasonVersionConflict   = "VERSION_CONFLICT"
	ReasonStoreUnavailable  = "STORE_UNAVAILABLE"
	ReasonRuntimeFailed     = "RUNTIME_FAILED"
	ReasonInvalidLabels     = "INVALID_LABELS"
	ReasonInvalidParent     = "INVALID_PARENT"
	ReasonOpenChildren      = "OPEN_CHILDREN"
	// ReasonInvalidRuntimeConfig: a runtimeConfig that its runtime's JSON
	// Schema refuses; extensions.path is the JSON pointer of the first failure.
	ReasonInvalidRuntimeConfig = "INVALID_RUNTIME_CONFIG"
)

// Error is a failure a client may see: a code, an optional reason, a message
// written for a person, and optional extra extensions. Any error that is not an
// *Error is reported to clients as EINTERNAL and logged, never shown.
type Error struct {
	Code       string
	Reason     string
	Message    string
	Extensions map[string]any
}

func (e *Error) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("%s/%s: %s", e.Code, e.Reason, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code, reason and formatted message.
func Errorf(code, reason, format string, args ...any) *Error {
	return &Error{Code: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err when it is (or wraps) an *Error, and
// EINTERNAL otherwise. It returns "" for a nil error.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorReason returns the reason of err when it is an *Error, and "" otherwise.
func ErrorReason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// TaskNotFound is the error for a mutation naming a task that does not exist.
func TaskNotFound(id string) *Error {
	return Errorf(ENOTFOUND, ReasonTaskNotFound, "No task with id %q.", id)
}

// VersionConflict is the error for a write whose expected version is stale.
func VersionConflict(expected, current int64) *Error {
	e := Errorf(ECONFLICT, ReasonVersionConflict, "The task changed: expected version %d, current version %d.", expected, current)
	e.Extensions = map[string]any{"currentVersion": current}
	return e
}

// ClosedTaskError returns the CONFLICT error for changing a closed task, or nil
// when status is open.
func ClosedTaskError(status TaskStatus) error {
	switch status {
	case StatusCompleted:
		return Errorf(ECONFLICT, ReasonAlreadyCompleted, "The task is already completed.")
	case StatusCancelled:
		return Errorf(ECONFLICT, ReasonAlreadyCancelled, "The task is already cancelled.")
	}
	return nil
}
