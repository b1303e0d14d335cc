// Package runtimehost is the host service a pod's runtime calls back into
// (podapi.Host): append its own runtime.* events, ask for a phase change,
// record output lines. Every call is bound to the pod's own task, so a
// runtime can never write to another task's stream, and obeys the same phase
// rules as a person.
package runtimehost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/ipa-dev/ipa/internal/artifact"
	"github.com/ipa-dev/ipa/internal/conversation"
	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// What a runtime may write through the host service, per call.
const (
	maxRuntimeEventBytes = 64 << 10
	maxOutputLines       = 1000
	maxOutputLineBytes   = 8 << 10
)

// Reader is what the host reads: the task (for a refused phase change) and
// the event that started the current run (the cause of what the runtime
// writes).
type Reader interface {
	GetTask(ctx context.Context, id string) (*ipa.Task, error)
	ReadEvents(ctx context.Context, q ipa.EventQuery) ([]ipa.Event, error)
}

// Factory returns the supervisor's host maker: each pod gets a Host bound
// to its task. With conv the host also converses (messages, requests,
// usage); with store it saves artifacts and, when the exec runtime reports
// its command's end, collects the files the command left in staging(taskID).
func Factory(w *eventlog.Writer, r Reader, conv *conversation.Service, store *artifact.Store, staging func(taskID string) string) func(taskID, runtime string) podapi.Host {
	return func(taskID, runtime string) podapi.Host {
		h := New(w, r, taskID, runtime)
		h.artifacts, h.staging = store, staging
		if conv == nil {
			return h
		}
		return &ConversingHost{Host: h, conv: conv}
	}
}

// Actor is the actor recorded on events a runtime writes.
func Actor(runtime string) string { return "runtime:" + runtime }

// Host serves one pod. Create it with New.
type Host struct {
	w       *eventlog.Writer
	r       Reader
	taskID  string
	runtime string

	artifacts *artifact.Store            // nil: no artifacts
	staging   func(taskID string) string // an exec command's $IPA_ARTIFACTS

	mu        sync.Mutex
	causation string // cached once found
}

// New returns the host service for the pod of taskID running runtime.
func New(w *eventlog.Writer, r Reader, taskID, runtime string) *Host {
	return &Host{w: w, r: r, taskID: taskID, runtime: runtime}
}

// cause returns the id of the event that started the task's current pod run
// (pod_started or pod_reattached), which events a runtime writes name as
// their cause; "" when there is none. The run's pod_started is recorded after
// the plugin starts, so it is looked up on the first call, not when the host
// is made; and while the newest pod event still ends the previous run, this
// run's start is not recorded yet: "" then, looked up again next time.
func (h *Host) cause(ctx context.Context) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.causation == "" {
		evs, err := h.r.ReadEvents(ctx, ipa.EventQuery{TaskID: h.taskID, Types: []string{ipa.EventPodStarted, ipa.EventPodReattached,
			ipa.EventPodStopped, ipa.EventPodCrashed, ipa.EventPodLost}, Limit: 1, Newest: true})
		if err == nil && len(evs) > 0 && (evs[0].Type == ipa.EventPodStarted || evs[0].Type == ipa.EventPodReattached) {
			h.causation = evs[0].ID
		}
	}
	return h.causation
}

// appendOpen appends ev to the pod's task when the task is open.
func (h *Host) appendOpen(ctx context.Context, ev ipa.NewEvent) (*ipa.Task, error) {
	t, _, err := h.w.Append(ctx, eventlog.Append{TaskID: h.taskID, Actor: Actor(h.runtime), Decide: func(cur *ipa.Task) ([]ipa.NewEvent, error) {
		if err := ipa.ClosedTaskError(cur.Status); err != nil {
			return nil, err
		}
		return []ipa.NewEvent{ev}, nil
	}})
	return t, err
}

// AppendEvent appends a runtime's own event (type under "runtime."). Returns
// EINVALID for another type or bad data, ECONFLICT for a closed task.
func (h *Host) AppendEvent(ctx context.Context, req podapi.AppendEventRequest) (podapi.AppendEventResponse, error) {
	typ := req.Type
	if !strings.HasPrefix(typ, ipa.RuntimeEventPrefix) || len(typ) > 128 || len(typ) == len(ipa.RuntimeEventPrefix) {
		return podapi.AppendEventResponse{}, invalidArg("A runtime may only append event types under %q (at most 128 characters).", ipa.RuntimeEventPrefix)
	}
	raw, err := eventJSON(req.Data)
	if err != nil {
		return podapi.AppendEventResponse{}, err
	}
	t, err := h.appendOpen(ctx, ipa.NewEvent{Type: typ, Data: raw, CausationID: h.cause(ctx)})
	if err != nil {
		return podapi.AppendEventResponse{}, err
	}
	if typ == execExited && h.artifacts != nil && h.staging != nil {
		// The command has ended: what it left in $IPA_ARTIFACTS is saved
		// now, before its plugin exits (and its task may complete).
		if _, err := h.artifacts.Collect(ctx, h.taskID, Actor(h.runtime), h.staging(h.taskID)); err != nil {
			slog.Default().Warn("artifacts not collected", slog.String("task_id", h.taskID), slog.Any("error", err))
		}
		if t2, err := h.r.GetTask(ctx, h.taskID); err == nil {
			t = t2
		}
	}
	return podapi.AppendEventResponse{Version: t.Version}, nil
}

// RequestPhase moves the task as the runtime asked, under the same phase
// rules as transitionPhase. Answers the phase after the request, and the
// refusal error (with the current phase) when the rules forbid it; an empty
// To changes nothing and answers the current phase.
func (h *Host) RequestPhase(ctx context.Context, req podapi.PhaseRequest) (podapi.PhaseResponse, error) {
	if req.To == "" {
		// Only a question: where is the task now?
		cur, err := h.r.GetTask(ctx, h.taskID)
		if err != nil {
			return podapi.PhaseResponse{}, err
		}
		return podapi.PhaseResponse{Phase: string(cur.Phase)}, nil
	}
	note := req.Note
	if len(note) > ipa.MaxReasonChars {
		note = strings.ToValidUTF8(note[:ipa.MaxReasonChars], "")
	}
	causation := h.cause(ctx)
	t, _, err := h.w.Append(ctx, eventlog.Append{TaskID: h.taskID, Actor: Actor(h.runtime), Decide: func(cur *ipa.Task) ([]ipa.NewEvent, error) {
		ev, err := ipa.PhaseChange(cur, ipa.Phase(req.To), note, causation)
		if err != nil {
			return nil, err
		}
		return []ipa.NewEvent{ev}, nil
	}})
	if err != nil {
		if cur, gerr := h.r.GetTask(ctx, h.taskID); gerr == nil {
			return podapi.PhaseResponse{Phase: string(cur.Phase)}, err
		}
		return podapi.PhaseResponse{}, err
	}
	return podapi.PhaseResponse{Phase: string(t.Phase)}, nil
}

// OutputLine is one line a pod's work printed, as pod_output records it.
type OutputLine struct {
	Stream string `json:"stream"` // stdout or stderr
	Text   string `json:"text"`
}

// outputData is the data of pod_output.
type outputData struct {
	Lines   []OutputLine `json:"lines"`
	Dropped int          `json:"dropped,omitempty"` // lines the runtime dropped at its cap
}

// Output records lines a pod printed as one pod_output event. Over-long lines
// are cut; at most maxOutputLines per call, the rest counted as dropped.
func (h *Host) Output(ctx context.Context, req podapi.OutputRequest) (podapi.OutputResponse, error) {
	dropped := req.Dropped
	if len(req.Lines) == 0 && dropped == 0 {
		return podapi.OutputResponse{}, nil
	}
	in := req.Lines
	if len(in) > maxOutputLines {
		dropped += len(in) - maxOutputLines
		in = in[:maxOutputLines]
	}
	lines := make([]OutputLine, len(in))
	for i, l := range in {
		lines[i] = OutputLine{Stream: l.Stream, Text: l.Text}
		if len(lines[i].Text) > maxOutputLineBytes {
			lines[i].Text = strings.ToValidUTF8(lines[i].Text[:maxOutputLineBytes], "")
		}
		if lines[i].Stream != "stderr" {
			lines[i].Stream = "stdout"
		}
	}
	_, err := h.appendOpen(ctx, ipa.NewEvent{Type: ipa.EventPodOutput, Data: outputData{Lines: lines, Dropped: dropped}, CausationID: h.cause(ctx)})
	return podapi.OutputResponse{}, err
}

// eventJSON checks a runtime's event data: empty means {}, else valid JSON
// within the size limit.
func eventJSON(data []byte) (json.RawMessage, error) {
	if len(data) == 0 {
		return json.RawMessage("{}"), nil
	}
	if len(data) > maxRuntimeEventBytes {
		return nil, invalidArg("Event data is %d bytes; the limit is %d.", len(data), maxRuntimeEventBytes)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return nil, invalidArg("Event data must be JSON.")
	}
	return buf.Bytes(), nil
}

func invalidArg(format string, args ...any) *ipa.Error {
	return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, format, args...)
}

// execExited is the exec runtime's report of its command's end
// (plugins/exec.EventExited), after which its artifacts are collected.
const execExited = "runtime.exec.exited"

// SaveArtifact keeps r as the task's artifact name (artifact_saved, by
// this runtime): the host-side entry point runtimes save artifacts through
// (the runtime SDK). It refuses with EINVALID an invalid name, a file over
// the limits (artifact_refused recorded), and with EUNAVAILABLE when this
// server keeps no artifacts.
func (h *Host) SaveArtifact(ctx context.Context, name string, r io.Reader) (artifact.Artifact, error) {
	if h.artifacts == nil {
		return artifact.Artifact{}, ipa.Errorf(ipa.EUNAVAILABLE, "", "This server keeps no artifacts.")
	}
	a, err := h.artifacts.Save(ctx, h.taskID, Actor(h.runtime), name, r)
	if errors.Is(err, artifact.ErrRefused) {
		return artifact.Artifact{}, invalidArg("The artifact %q was refused: %s.", name, strings.TrimPrefix(err.Error(), artifact.ErrRefused.Error()+": "))
	}
	return a, err
}

var _ podapi.ArtifactSaving = (*Host)(nil)

// UploadArtifact is SaveArtifact for a runtime's call through the SDK
// (protocol version 3): same names, limits and errors.
func (h *Host) UploadArtifact(ctx context.Context, name string, r io.Reader) (podapi.Artifact, error) {
	a, err := h.SaveArtifact(ctx, name, r)
	if err != nil {
		return podapi.Artifact{}, err
	}
	return podapi.Artifact{Name: a.Name, SizeBytes: a.SizeBytes, SHA256: a.SHA256}, nil
}
