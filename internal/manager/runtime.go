package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// What a runtime may write through the host service, per call.
const (
	maxRuntimeEventBytes = 64 << 10
	maxOutputLines       = 1000
	maxOutputLineBytes   = 8 << 10
)

// RuntimeActor is the actor recorded on events a runtime writes.
func RuntimeActor(runtime string) string { return "runtime:" + runtime }

// OutputLine is one line a pod's work printed.
type OutputLine struct {
	Stream string `json:"stream"` // stdout or stderr
	Text   string `json:"text"`
}

// podOutputData is the data of pod_output.
type podOutputData struct {
	Lines   []OutputLine `json:"lines"`
	Dropped int          `json:"dropped,omitempty"` // lines the runtime dropped at its cap
}

// RuntimeCausation returns the id of the event that started the task's
// current pod run (pod_started or pod_reattached), which events a runtime
// writes name as their cause; "" when there is none.
func (m *Manager) RuntimeCausation(ctx context.Context, taskID string) string {
	evs, err := m.store.ReadEvents(ctx, ipa.EventQuery{TaskID: taskID, Types: []string{ipa.EventPodStarted, ipa.EventPodReattached}, Limit: 1, Newest: true})
	if err != nil || len(evs) == 0 {
		return ""
	}
	return evs[0].ID
}

// RuntimeAppend appends a runtime's own event (type under "runtime.") to the
// task the runtime runs for, as actor runtime:<name>. Returns EINVALID for
// another type or bad data, ECONFLICT for a closed task.
func (m *Manager) RuntimeAppend(ctx context.Context, taskID, runtime, causation, typ string, data []byte) (int64, error) {
	if !strings.HasPrefix(typ, ipa.RuntimeEventPrefix) || len(typ) > 128 || len(typ) == len(ipa.RuntimeEventPrefix) {
		return 0, invalidArg("A runtime may only append event types under %q (at most 128 characters).", ipa.RuntimeEventPrefix)
	}
	raw, err := runtimeJSON(data)
	if err != nil {
		return 0, err
	}
	t, _, err := m.append(ctx, taskID, nil, RuntimeActor(runtime), func(cur *ipa.Task) ([]ipa.NewEvent, error) {
		if err := ipa.ClosedTaskError(cur.Status); err != nil {
			return nil, err
		}
		return []ipa.NewEvent{{Type: typ, Data: raw, CausationID: causation}}, nil
	})
	if err != nil {
		return 0, err
	}
	return t.Version, nil
}

// RuntimeRequestPhase moves the task as a runtime asked, under the same phase
// rules as transitionPhase. Returns the phase after the request, and the
// refusal error (with the current phase) when the rules forbid it.
func (m *Manager) RuntimeRequestPhase(ctx context.Context, taskID, runtime, causation string, to ipa.Phase, note string) (ipa.Phase, error) {
	if len(note) > ipa.MaxReasonChars {
		note = note[:ipa.MaxReasonChars]
	}
	t, _, err := m.changePhase(ctx, taskID, RuntimeActor(runtime), to, note, causation, nil)
	if err != nil {
		if cur, gerr := m.store.GetTask(ctx, taskID); gerr == nil {
			return cur.Phase, err
		}
		return "", err
	}
	return t.Phase, nil
}

// RuntimeOutput records lines a pod printed as one pod_output event.
// Over-long lines are cut; at most maxOutputLines per call.
func (m *Manager) RuntimeOutput(ctx context.Context, taskID, runtime, causation string, lines []OutputLine, dropped int) error {
	if len(lines) == 0 && dropped == 0 {
		return nil
	}
	if len(lines) > maxOutputLines {
		dropped += len(lines) - maxOutputLines
		lines = lines[:maxOutputLines]
	}
	for i := range lines {
		if len(lines[i].Text) > maxOutputLineBytes {
			lines[i].Text = strings.ToValidUTF8(lines[i].Text[:maxOutputLineBytes], "")
		}
		if lines[i].Stream != "stderr" {
			lines[i].Stream = "stdout"
		}
	}
	_, _, err := m.append(ctx, taskID, nil, RuntimeActor(runtime), func(cur *ipa.Task) ([]ipa.NewEvent, error) {
		if err := ipa.ClosedTaskError(cur.Status); err != nil {
			return nil, err
		}
		return []ipa.NewEvent{{Type: ipa.EventPodOutput, Data: podOutputData{Lines: lines, Dropped: dropped}, CausationID: causation}}, nil
	})
	return err
}

// runtimeJSON checks a runtime's event data: empty means {}, else valid JSON
// within the size limit.
func runtimeJSON(data []byte) (json.RawMessage, error) {
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
