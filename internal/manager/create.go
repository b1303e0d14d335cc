package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// DefaultRuntime is the runtime of a task created without one.
const DefaultRuntime = "demo"

// CreateTask validates the input and creates the task: its stream, its
// task_created event and its row, in one transaction. With an idempotency key
// already used by the same actor it returns the first task and creates
// nothing. When AutoStart is set it then starts the pod; a pod that fails to
// start does not undo the task (the error is returned with the task).
// Requires OPERATOR. Returns EINVALID (INVALID_TITLE, INVALID_ARGUMENT) for bad
// input.
func (m *Manager) CreateTask(ctx context.Context, in ipa.CreateTaskInput) (*ipa.Task, error) {
	actor, err := ipa.RequireRole(ctx, ipa.RoleOperator)
	if err != nil {
		return nil, err
	}
	data, err := m.validateCreate(in)
	if err != nil {
		return nil, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	res, err := m.store.CreateTask(ctx, store.CreateTaskRequest{
		TaskID:         id.String(),
		Created:        data,
		Actor:          actor.ID,
		CorrelationID:  ipa.CorrelationID(ctx),
		IdempotencyKey: data.IdempotencyKey,
		Now:            m.now(),
	})
	if err != nil {
		return nil, err
	}
	if res.Existing {
		return res.Task, nil
	}
	m.metrics.taskCreated(res.Task.Runtime)
	m.log.InfoContext(ctx, "task created", "task_id", res.Task.ID, "runtime", res.Task.Runtime,
		"actor", actor.ID, "correlation_id", ipa.CorrelationID(ctx))
	m.publish(res.Events, res.Task)
	if in.AutoStart != nil && *in.AutoStart {
		t, _, err := m.startPod(ctx, res.Task.ID, nil, res.Events[0].ID)
		if err != nil {
			return res.Task, err
		}
		return t, nil
	}
	return res.Task, nil
}

// validateCreate checks every field of a create and returns the event data.
func (m *Manager) validateCreate(in ipa.CreateTaskInput) (ipa.TaskCreatedData, error) {
	var d ipa.TaskCreatedData
	title, err := ipa.NormalizeTitle(in.Title)
	if err != nil {
		return d, err
	}
	if strings.ContainsRune(title, 0) {
		return d, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidTitle, "The title must not contain NUL characters.")
	}
	d.Title = title
	if in.Description != nil {
		if len(*in.Description) > ipa.MaxDescriptionBytes {
			return d, invalidArg("description is %d bytes; the limit is %d.", len(*in.Description), ipa.MaxDescriptionBytes)
		}
		if !utf8.ValidString(*in.Description) || strings.ContainsRune(*in.Description, 0) {
			return d, invalidArg("description must be valid UTF-8 without NUL characters.")
		}
		d.Description = *in.Description
	}
	d.Runtime = DefaultRuntime
	if in.Runtime != nil && *in.Runtime != "" {
		d.Runtime = *in.Runtime
	}
	rt, ok := m.runtimes[d.Runtime]
	if !ok {
		return d, invalidArg("Unknown runtime %q; known runtimes: %s.", d.Runtime, strings.Join(m.names, ", "))
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
			}
			return d, invalidArg("runtimeConfig for %s: %s", d.Runtime, msg)
		}
	}
	if d.Metadata, err = jsonObject("metadata", in.Metadata, ipa.MaxMetadataBytes); err != nil {
		return d, err
	}
	d.RestartPolicy = in.RestartPolicy.Apply(m.policy)
	if err := d.RestartPolicy.Validate(); err != nil {
		return d, err
	}
	if in.IdempotencyKey != nil {
		k := *in.IdempotencyKey
		if k == "" || len(k) > ipa.MaxIdempotencyKey || !utf8.ValidString(k) || strings.ContainsRune(k, 0) {
			return d, invalidArg("idempotencyKey must be 1 to %d bytes of UTF-8.", ipa.MaxIdempotencyKey)
		}
		d.IdempotencyKey = k
	}
	return d, nil
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

func invalidArg(format string, args ...any) *ipa.Error {
	return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, format, args...)
}
