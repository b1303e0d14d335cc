// Package service holds the use cases of the product, one service per noun:
// TaskService (create, list, move, close tasks), PodService (start, stop,
// watch pods), FeedService (live feeds), TokenService (API tokens and the
// caller's identity) and WebhookService (outbound webhook endpoints). Each checks its caller's role, validates its input and
// applies the product's policy; each declares the small interfaces it needs
// from the store, the event log and the supervisor and takes them at
// construction, so its rules can be tested without a database. The GraphQL
// resolvers call them and nothing else.
package service

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// Page size bounds for every list.
const (
	MaxPageSize     = 1000
	DefaultPageSize = 100
)

// TaskReader reads task rows and streams.
type TaskReader interface {
	GetTask(ctx context.Context, id string) (*ipa.Task, error)
	FindTasks(ctx context.Context, q ipa.TaskQuery) (ipa.TaskPage, error)
	CountTasks(ctx context.Context, f ipa.TaskFilter) (int64, error)
	ReadEvents(ctx context.Context, q ipa.EventQuery) ([]ipa.Event, error)
	CountEvents(ctx context.Context, taskID string, types []string) (int64, error)
	ActivePodTasks(ctx context.Context) ([]*ipa.Task, error)
	// DueTasks returns open tasks whose deadline is at or before now.
	DueTasks(ctx context.Context, now time.Time, limit int) ([]*ipa.Task, error)
}

// EventWriter commits events and publishes them (*eventlog.Writer).
type EventWriter interface {
	Append(ctx context.Context, a eventlog.Append) (*ipa.Task, []ipa.Event, error)
	CreateTask(ctx context.Context, req ipa.CreateTaskRequest) (ipa.CreateTaskResult, error)
}

// Pods is the supervisor as the services see it.
type Pods interface {
	// StartPod starts the task's pod unless one runs; started is false when
	// one already ran. trigger is recorded in pod_started (see the
	// ipa.Trigger constants); causationID names the event that caused the
	// start. A start that fails is recorded as a crash (start_failed) and
	// its error returned.
	StartPod(ctx context.Context, t *ipa.Task, trigger, causationID string) (started bool, err error)
	// StopPod stops the pod gracefully; ipa.ErrPodNotRunning when none runs.
	StopPod(ctx context.Context, taskID, reason string) error
	// RestartPod stops the pod if it runs, then starts it, clearing FAILED.
	RestartPod(ctx context.Context, t *ipa.Task) error
	// Status answers from memory, never calling into the pod.
	Status(taskID string) ipa.PodStatus
	// Forget drops what is kept in memory about a closed task.
	Forget(taskID string)
	// PausePod and ResumePod stop and continue the pod's work;
	// ipa.ErrPodNotRunning when no pod runs.
	PausePod(ctx context.Context, taskID string) error
	ResumePod(ctx context.Context, taskID string) error
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

func invalidArg(format string, args ...any) *ipa.Error {
	return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, format, args...)
}

// optionalText trims a single-line free-text argument (a reason, a note)
// and checks it: INVALID_TEXT for invalid UTF-8 or a control character in
// it, INVALID_ARGUMENT when it is too long.
func optionalText(field string, s *string) (string, error) {
	if s == nil {
		return "", nil
	}
	v := strings.TrimSpace(*s)
	if err := ipa.CheckLine(field, v); err != nil {
		return "", err
	}
	if utf8.RuneCountInString(v) > ipa.MaxReasonChars {
		return "", invalidArg("%s must be text of at most %d characters.", field, ipa.MaxReasonChars)
	}
	return v, nil
}

// jsonObject checks that raw is absent, null, or a JSON object within limit
// bytes, and returns its compact form ("{}" when absent).
func jsonObject(field string, raw json.RawMessage, limit int) (json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return json.RawMessage("{}"), nil
	}
	if len(raw) > limit {
		return nil, invalidArg("%s is %d bytes of JSON; the limit is %d.", field, len(raw), limit)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return nil, invalidArg("%s must be a JSON object.", field)
	}
	if hasNULEscape(buf.Bytes()) {
		return nil, invalidArg("%s must not contain NUL characters (\\u0000).", field)
	}
	return buf.Bytes(), nil
}

// hasNULEscape reports whether valid JSON holds a \u0000 escape. NUL is
// refused everywhere (PostgreSQL's text and jsonb cannot store it), so both
// databases accept the same inputs.
func hasNULEscape(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' {
			if bytes.HasPrefix(b[i+1:], []byte("u0000")) {
				return true
			}
			i++ // skip the escaped character
		}
	}
	return false
}

// validateFilter refuses filter values no task can have.
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
	if err := ipa.ValidateLabels(f.Labels); err != nil {
		return err
	}
	if f.IDPrefix != nil {
		if _, _, ok := ipa.IDPrefixRange(*f.IDPrefix); !ok {
			return invalidArg("idPrefix must be the start of a task id: hexadecimal digits, with dashes where the id has them.")
		}
	}
	return nil
}

// requireRuntimeRole refuses a caller whose role is below the one the
// runtime needs to create a task or start its pod (exec needs ADMIN unless
// the server says otherwise). Returns EFORBIDDEN naming the runtime.
func requireRuntimeRole(ctx context.Context, rt ipa.Runtime) error {
	if rt.Role == "" {
		return nil
	}
	if _, err := ipa.RequireRole(ctx, rt.Role); err != nil {
		if ipa.ErrorCode(err) == ipa.EFORBIDDEN {
			return ipa.Errorf(ipa.EFORBIDDEN, "", "The %s runtime needs role %s on this server.", rt.Name, rt.Role)
		}
		return err
	}
	return nil
}
