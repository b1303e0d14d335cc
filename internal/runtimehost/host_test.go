package runtimehost_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/artifact"
	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
	"github.com/ipa-dev/ipa/internal/runtimehost"
	"github.com/ipa-dev/ipa/internal/store"
)

// The per-task write boundary of every runtime, against a real SQLite
// file: what a runtime may write through its host, and every refusal.

type env struct {
	st *store.Store
	w  *eventlog.Writer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "ipa.db"), store.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return &env{st: st, w: eventlog.NewWriter(st, nil)}
}

// task creates an open task whose pod has started, and returns its id and
// its pod_started event.
func (e *env) task(t *testing.T) (string, ipa.Event) {
	t.Helper()
	ctx := context.Background()
	res, err := e.w.CreateTask(ctx, ipa.CreateTaskRequest{TaskID: uuid.NewString(), Actor: "ann",
		Created: ipa.TaskCreatedData{Title: "t", Runtime: "demo", RestartPolicy: ipa.DefaultRestartPolicy()}})
	require.NoError(t, err)
	ev, err := eventlog.NewPodRecorder(e.w).RecordPodEvent(ctx, res.Task.ID,
		ipa.NewEvent{Type: ipa.EventPodStarted, Data: ipa.PodStartedData{PID: 1, Runtime: "demo", Trigger: "manual"}})
	require.NoError(t, err)
	return res.Task.ID, ev
}

func (e *env) events(t *testing.T, taskID string) []ipa.Event {
	t.Helper()
	evs, err := e.st.ReadEvents(context.Background(), ipa.EventQuery{TaskID: taskID, Limit: 10000})
	require.NoError(t, err)
	return evs
}

func (e *env) cancel(t *testing.T, taskID string) {
	t.Helper()
	_, _, err := e.w.Append(context.Background(), eventlog.Append{TaskID: taskID, Actor: "ann", Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
		return []ipa.NewEvent{{Type: ipa.EventTaskCancelled, Data: ipa.TaskCancelledData{Reason: "enough"}}}, nil
	}})
	require.NoError(t, err)
}

func requireInvalid(t *testing.T, err error, msgAndArgs ...any) {
	t.Helper()
	require.Equal(t, ipa.EINVALID, ipa.ErrorCode(err), msgAndArgs...)
	require.Equal(t, ipa.ReasonInvalidArgument, ipa.ErrorReason(err), msgAndArgs...)
}

// A runtime's event lands on its own task, as the runtime, caused by the
// run's pod_started; another task is never touched.
func TestAppendEventBoundToItsTask(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	mine, started := e.task(t)
	other, _ := e.task(t)
	otherBefore := e.events(t, other)

	h := runtimehost.New(e.w, e.st, mine, "demo")
	res, err := h.AppendEvent(ctx, podapi.AppendEventRequest{Type: "runtime.demo.step", Data: []byte(` { "n" : 1 } `)})
	require.NoError(t, err)
	evs := e.events(t, mine)
	last := evs[len(evs)-1]
	require.Equal(t, res.Version, last.Version)
	require.Equal(t, "runtime.demo.step", last.Type)
	require.JSONEq(t, `{"n":1}`, string(last.Data))
	require.Equal(t, runtimehost.Actor("demo"), last.ActorID)
	require.Equal(t, started.ID, last.CausationID)
	require.Equal(t, otherBefore, e.events(t, other), "another task's stream")

	_, err = h.AppendEvent(ctx, podapi.AppendEventRequest{Type: "runtime.demo.empty"})
	require.NoError(t, err)
	evs = e.events(t, mine)
	require.JSONEq(t, `{}`, string(evs[len(evs)-1].Data), "no data is {}")
}

// Every refusal of AppendEvent is INVALID_ARGUMENT and writes nothing.
func TestAppendEventRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, _ := e.task(t)
	h := runtimehost.New(e.w, e.st, id, "demo")
	before := e.events(t, id)

	for name, req := range map[string]podapi.AppendEventRequest{
		"a lifecycle type":      {Type: ipa.EventTaskCompleted},
		"a pod type":            {Type: ipa.EventPodStarted},
		"the bare prefix":       {Type: ipa.RuntimeEventPrefix},
		"no type":               {Type: ""},
		"a prefix look-alike":   {Type: "runtimes.x"},
		"a type over 128 bytes": {Type: ipa.RuntimeEventPrefix + strings.Repeat("x", 129-len(ipa.RuntimeEventPrefix))},
		"data that is not JSON": {Type: "runtime.x", Data: []byte("{not json")},
		"data over 64 KiB":      {Type: "runtime.x", Data: []byte(`"` + strings.Repeat("x", 64<<10) + `"`)},
	} {
		_, err := h.AppendEvent(ctx, req)
		requireInvalid(t, err, name)
	}
	_, err := h.AppendEvent(ctx, podapi.AppendEventRequest{Type: ipa.RuntimeEventPrefix + strings.Repeat("x", 128-len(ipa.RuntimeEventPrefix))})
	require.NoError(t, err, "128 bytes is allowed")
	_, err = h.AppendEvent(ctx, podapi.AppendEventRequest{Type: "runtime.x", Data: []byte(`"` + strings.Repeat("x", 64<<10-2) + `"`)})
	require.NoError(t, err, "64 KiB is allowed")
	require.Len(t, e.events(t, id), len(before)+2)
}

// Once its task is closed (the pod is being stopped), a runtime writes
// nothing more: events, output and phase requests are refused as the task
// is closed.
func TestWritesAfterTheTaskClosed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, _ := e.task(t)
	h := runtimehost.New(e.w, e.st, id, "demo")
	e.cancel(t, id)
	before := e.events(t, id)

	_, err := h.AppendEvent(ctx, podapi.AppendEventRequest{Type: "runtime.x"})
	require.Equal(t, ipa.ReasonAlreadyCancelled, ipa.ErrorReason(err), "%v", err)
	_, err = h.Output(ctx, podapi.OutputRequest{Lines: []podapi.OutputLine{{Stream: "stdout", Text: "late"}}})
	require.Equal(t, ipa.ReasonAlreadyCancelled, ipa.ErrorReason(err), "%v", err)
	res, err := h.RequestPhase(ctx, podapi.PhaseRequest{To: string(ipa.PhasePlanning)})
	require.Equal(t, ipa.ReasonAlreadyCancelled, ipa.ErrorReason(err), "%v", err)
	require.Equal(t, string(ipa.PhaseCancelled), res.Phase, "the refusal answers where the task is")
	require.Equal(t, before, e.events(t, id))
}

// A runtime moves its task under the same phase rules as a person; a
// refusal answers the current phase; an empty request only asks.
func TestRequestPhase(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, _ := e.task(t)
	h := runtimehost.New(e.w, e.st, id, "demo")

	res, err := h.RequestPhase(ctx, podapi.PhaseRequest{})
	require.NoError(t, err)
	require.Equal(t, string(ipa.PhaseSpecClarification), res.Phase)

	res, err = h.RequestPhase(ctx, podapi.PhaseRequest{To: string(ipa.PhaseReview)})
	require.Equal(t, ipa.ReasonInvalidTransition, ipa.ErrorReason(err), "%v", err)
	require.Equal(t, string(ipa.PhaseSpecClarification), res.Phase)
	_, err = h.RequestPhase(ctx, podapi.PhaseRequest{To: string(ipa.PhaseCompleted)})
	require.Equal(t, ipa.ReasonInvalidTransition, ipa.ErrorReason(err), "closing is not a runtime's move: %v", err)
	_, err = h.RequestPhase(ctx, podapi.PhaseRequest{To: "NOWHERE"})
	requireInvalid(t, err)

	long := "a" + strings.Repeat("é", ipa.MaxReasonChars) // two bytes each: the cut falls inside a rune
	res, err = h.RequestPhase(ctx, podapi.PhaseRequest{To: string(ipa.PhasePlanning), Note: long})
	require.NoError(t, err)
	require.Equal(t, string(ipa.PhasePlanning), res.Phase)
	evs := e.events(t, id)
	last := evs[len(evs)-1]
	require.Equal(t, ipa.EventPhaseChanged, last.Type)
	var d ipa.PhaseChangedData
	require.NoError(t, json.Unmarshal(last.Data, &d))
	require.LessOrEqual(t, len(d.Note), ipa.MaxReasonChars, "the note is cut to the limit")
	require.True(t, strings.HasPrefix(long, d.Note) && d.Note != "", "cut on a rune boundary")
}

// Output: lines over the per-call cap are counted as dropped, over-long
// lines are cut, anything but stderr is stdout, nothing is nothing.
func TestOutputLimits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, _ := e.task(t)
	h := runtimehost.New(e.w, e.st, id, "demo")
	before := len(e.events(t, id))

	_, err := h.Output(ctx, podapi.OutputRequest{})
	require.NoError(t, err)
	require.Len(t, e.events(t, id), before, "an empty call writes nothing")

	lines := make([]podapi.OutputLine, 1005)
	for i := range lines {
		lines[i] = podapi.OutputLine{Stream: "stdout", Text: "l"}
	}
	lines[0] = podapi.OutputLine{Stream: "stderr", Text: strings.Repeat("x", 9<<10)}
	lines[1] = podapi.OutputLine{Stream: "weird", Text: "w"}
	_, err = h.Output(ctx, podapi.OutputRequest{Lines: lines, Dropped: 2})
	require.NoError(t, err)
	evs := e.events(t, id)
	require.Len(t, evs, before+1, "one pod_output per call")
	last := evs[len(evs)-1]
	require.Equal(t, ipa.EventPodOutput, last.Type)
	var d struct {
		Lines   []runtimehost.OutputLine `json:"lines"`
		Dropped int                      `json:"dropped"`
	}
	require.NoError(t, json.Unmarshal(last.Data, &d))
	require.Len(t, d.Lines, 1000)
	require.Equal(t, 2+5, d.Dropped, "the runtime's own drops and the cap's")
	require.Equal(t, "stderr", d.Lines[0].Stream)
	require.Len(t, d.Lines[0].Text, 8<<10)
	require.Equal(t, "stdout", d.Lines[1].Stream)
}

// Artifacts: a server that keeps none refuses as unavailable; a bad name
// and a file over the limit are INVALID_ARGUMENT and leave an
// artifact_refused on the task's own stream.
func TestSaveArtifactRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, _ := e.task(t)

	bare := runtimehost.New(e.w, e.st, id, "demo")
	_, err := bare.SaveArtifact(ctx, "a.txt", strings.NewReader("x"))
	require.Equal(t, ipa.EUNAVAILABLE, ipa.ErrorCode(err))

	arts := artifact.New(artifact.Config{DataDir: t.TempDir(), MaxBytes: 16, MaxTaskBytes: 1 << 20, Read: e.st,
		Record: func(ctx context.Context, taskID, actor, typ string, data any) error {
			_, _, err := e.w.Append(ctx, eventlog.Append{TaskID: taskID, Actor: actor, Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
				return []ipa.NewEvent{{Type: typ, Data: data}}, nil
			}})
			return err
		}})
	h := runtimehost.Factory(e.w, e.st, nil, arts, nil)(id, "demo").(*runtimehost.Host)
	for name, c := range map[string]struct{ file, body string }{
		"a path":        {"../escape", "x"},
		"over 16 bytes": {"big.txt", strings.Repeat("x", 17)},
	} {
		before := len(e.events(t, id))
		_, err := h.UploadArtifact(ctx, c.file, strings.NewReader(c.body))
		requireInvalid(t, err, name)
		evs := e.events(t, id)
		require.Len(t, evs, before+1, name)
		require.Equal(t, artifact.EventRefused, evs[len(evs)-1].Type, name)
		require.Equal(t, runtimehost.Actor("demo"), evs[len(evs)-1].ActorID, name)
	}
	a, err := h.UploadArtifact(ctx, "ok.txt", strings.NewReader("hello"))
	require.NoError(t, err)
	require.EqualValues(t, 5, a.SizeBytes)
}
