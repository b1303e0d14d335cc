package pod

import (
	"errors"
	"fmt"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Error codes: the GraphQL error codes a person sees (extensions.code).
const (
	CodeInvalid     = "BAD_USER_INPUT" // a bad config or request
	CodeConflict    = "CONFLICT"       // already started, another task
	CodeNotFound    = "NOT_FOUND"
	CodeUnavailable = "UNAVAILABLE" // the work cannot run now
	CodeInternal    = "INTERNAL_SERVER_ERROR"
)

// Reasons refine a code (extensions.reason).
const (
	ReasonInvalidArgument   = "INVALID_ARGUMENT"
	ReasonInvalidTransition = "INVALID_TRANSITION" // a refused phase request
	// ReasonApprovalPending refuses a move into a phase the task gates: a
	// person's approval is asked for (once); ask again later.
	ReasonApprovalPending = "APPROVAL_PENDING"
	ReasonRuntimeFailed   = "RUNTIME_FAILED"
)

// Error is an error with a code, a reason and a message for a person. It
// crosses the process boundary in both directions: returned by a Runtime
// method it reaches the person who asked; a Host call refused by the server
// returns one.
type Error struct {
	Code    string
	Reason  string
	Message string
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

// toEngine turns a runtime's error into the engine's: an *Error keeps its
// code, reason and message; any other error stays as it is (the server
// reports it as an internal error).
func toEngine(err error) error {
	var e *Error
	if err == nil || !errors.As(err, &e) {
		return err
	}
	return &ipa.Error{Code: e.Code, Reason: e.Reason, Message: e.Message}
}

// fromEngine turns an error from the host into an *Error, leaving
// ErrHostUnavailable and others as they are.
func fromEngine(err error) error {
	var e *ipa.Error
	if err == nil || !errors.As(err, &e) {
		return err
	}
	return &Error{Code: e.Code, Reason: e.Reason, Message: e.Message}
}
