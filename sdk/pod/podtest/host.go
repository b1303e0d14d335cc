package podtest

import (
	"context"
	"encoding/json"
	"slices"
	"sync"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// Recording is what a runtime did through its host during a check: the
// output lines, events and phase requests the kit's host received (the kit's
// host answers like the server's: runtime.* events only, phase moves checked
// against the task's current phase).
type Recording struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	phase   string
	snap    Snapshot
}

// Snapshot is a copy of a Recording at one moment.
type Snapshot struct {
	Output []OutputLine
	Events []Event
	// Phases are the phase requests with a target, in order, with the
	// host's answer.
	Phases []PhaseAsk
	// Phase is the task's phase now (it starts in SPEC_CLARIFICATION).
	Phase string
	// Refused are the calls the host refused, as messages.
	Refused []string
}

// OutputLine is one recorded output line.
type OutputLine struct{ Stream, Text string }

// Event is one recorded event.
type Event struct {
	Type string
	Data json.RawMessage
}

// PhaseAsk is one recorded phase request.
type PhaseAsk struct {
	To      string
	Granted bool
}

func newRecording() *Recording {
	return &Recording{changed: make(chan struct{}), phase: string(ipa.PhaseSpecClarification)}
}

// Snapshot returns a copy of what was recorded so far.
func (r *Recording) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.snap
	s.Output = slices.Clone(s.Output)
	s.Events = slices.Clone(s.Events)
	s.Phases = slices.Clone(s.Phases)
	s.Refused = slices.Clone(s.Refused)
	s.Phase = r.phase
	return s
}

// Wait waits until cond holds for the recording, or ctx ends; it reports
// whether cond held.
func (r *Recording) Wait(ctx context.Context, cond func(Snapshot) bool) bool {
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if cond(r.Snapshot()) {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

func (r *Recording) update(f func()) {
	r.mu.Lock()
	f()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// host is the kit's Host: one per task, shared by every connection to it.
type host struct {
	rec     *Recording
	version int64
}

var _ podapi.Host = (*host)(nil)

func (h *host) AppendEvent(_ context.Context, req podapi.AppendEventRequest) (podapi.AppendEventResponse, error) {
	data := req.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	var obj map[string]any
	if json.Unmarshal(data, &obj) != nil {
		err := ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Event %s: data must be a JSON object.", req.Type)
		h.rec.update(func() { h.rec.snap.Refused = append(h.rec.snap.Refused, err.Message) })
		return podapi.AppendEventResponse{}, err
	}
	var v int64
	h.rec.update(func() {
		h.rec.snap.Events = append(h.rec.snap.Events, Event{Type: req.Type, Data: data})
		h.version++
		v = h.version
	})
	return podapi.AppendEventResponse{Version: v}, nil
}

func (h *host) RequestPhase(_ context.Context, req podapi.PhaseRequest) (podapi.PhaseResponse, error) {
	var err error
	var now string
	h.rec.update(func() {
		now = h.rec.phase
		if req.To == "" {
			return
		}
		err = ipa.CheckPhaseTransition(ipa.Phase(now), ipa.Phase(req.To))
		h.rec.snap.Phases = append(h.rec.snap.Phases, PhaseAsk{To: req.To, Granted: err == nil})
		if err == nil {
			h.rec.phase, now = req.To, req.To
		}
	})
	return podapi.PhaseResponse{Phase: now}, err
}

func (h *host) Output(_ context.Context, req podapi.OutputRequest) (podapi.OutputResponse, error) {
	for _, l := range req.Lines {
		if l.Stream != podapi.StreamStdout && l.Stream != podapi.StreamStderr {
			err := ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Output stream must be stdout or stderr; got %q.", l.Stream)
			h.rec.update(func() { h.rec.snap.Refused = append(h.rec.snap.Refused, err.Message) })
			return podapi.OutputResponse{}, err
		}
	}
	h.rec.update(func() {
		for _, l := range req.Lines {
			h.rec.snap.Output = append(h.rec.snap.Output, OutputLine{Stream: l.Stream, Text: l.Text})
		}
	})
	return podapi.OutputResponse{}, nil
}
