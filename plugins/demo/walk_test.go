package demo

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/sdk/pod"
)

// phaseHost is a host that keeps a task's phase under the real phase rules
// (ipa.CheckPhaseTransition) and journals the phase changes asked for.
type phaseHost struct {
	mu        sync.Mutex
	phase     ipa.Phase
	requested []string
}

func (h *phaseHost) RequestPhase(_ context.Context, req pod.PhaseRequest) (pod.PhaseResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.To == "" {
		return pod.PhaseResponse{Phase: string(h.phase)}, nil
	}
	h.requested = append(h.requested, req.To)
	if err := ipa.CheckPhaseTransition(h.phase, ipa.Phase(req.To)); err != nil {
		return pod.PhaseResponse{Phase: string(h.phase)}, err
	}
	h.phase = ipa.Phase(req.To)
	return pod.PhaseResponse{Phase: req.To}, nil
}

func (h *phaseHost) AppendEvent(context.Context, pod.AppendEventRequest) (pod.AppendEventResponse, error) {
	return pod.AppendEventResponse{}, nil
}

func (h *phaseHost) Output(context.Context, pod.OutputRequest) (pod.OutputResponse, error) {
	return pod.OutputResponse{}, nil
}

// move is a person's transitionPhase.
func (h *phaseHost) move(to ipa.Phase) {
	h.mu.Lock()
	h.phase = to
	h.mu.Unlock()
}

func (h *phaseHost) current() (ipa.Phase, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.phase, append([]string(nil), h.requested...)
}

func startDemo(t *testing.T, h *phaseHost) *Runtime {
	t.Helper()
	r := New()
	if _, err := r.Start(context.Background(), pod.StartRequest{TaskID: "t1", RuntimeConfig: json.RawMessage(`{"stepMs": 10}`), Host: h}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = r.Stop(ctx, pod.StopRequest{})
	})
	return r
}

func waitPhase(t *testing.T, h *phaseHost, want ipa.Phase, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, req := h.current()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("phase %s, want %s (requests %v)", got, want, req)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIdleDemoNoticesAManualMove: a person sends the task from REVIEW back
// to DEVELOPMENT while the demo idles; the demo notices and walks it to
// REVIEW again.
func TestIdleDemoNoticesAManualMove(t *testing.T) {
	t.Parallel()
	h := &phaseHost{phase: ipa.PhaseSpecClarification}
	r := startDemo(t, h)
	waitPhase(t, h, ipa.PhaseReview, 5*time.Second)
	_, before := h.current()

	h.move(ipa.PhaseDevelopment)
	waitPhase(t, h, ipa.PhaseReview, 5*time.Second)
	_, after := h.current()
	if got := after[len(before):]; len(got) != 1 || got[0] != string(ipa.PhaseReview) {
		t.Fatalf("requests after the move %v, want [REVIEW]", got)
	}
	st, err := r.State(context.Background(), pod.StateRequest{})
	if err != nil || st.Phase != string(ipa.PhaseReview) {
		t.Fatalf("state %+v %v", st, err)
	}
}

// TestDemoStartsFromTheTasksPhase: a demo started on a task already in
// DEVELOPMENT (a restart, a resume) goes forward from there and never asks
// to move it back.
func TestDemoStartsFromTheTasksPhase(t *testing.T) {
	t.Parallel()
	h := &phaseHost{phase: ipa.PhaseDevelopment}
	startDemo(t, h)
	waitPhase(t, h, ipa.PhaseReview, 5*time.Second)
	if _, req := h.current(); len(req) != 1 || req[0] != string(ipa.PhaseReview) {
		t.Fatalf("requests %v, want [REVIEW]", req)
	}
}

// TestWalkingDemoFollowsAManualMove: a person moves the task forward while
// the demo walks; the demo carries on from the new phase instead of asking
// for the one it had in mind.
func TestWalkingDemoFollowsAManualMove(t *testing.T) {
	t.Parallel()
	h := &phaseHost{phase: ipa.PhaseSpecClarification}
	r := New()
	// A slow walk, so the move lands between two steps.
	if _, err := r.Start(context.Background(), pod.StartRequest{TaskID: "t1", RuntimeConfig: json.RawMessage(`{"stepMs": 200}`), Host: h}); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = r.Stop(context.Background(), pod.StopRequest{}) }()
	waitPhase(t, h, ipa.PhasePlanning, 5*time.Second)
	h.move(ipa.PhaseReview) // a person skips ahead (the host's rules are not checked for people here)
	time.Sleep(500 * time.Millisecond)
	if got, req := h.current(); got != ipa.PhaseReview || len(req) != 1 {
		t.Fatalf("phase %s requests %v: the demo moved a task a person had put in REVIEW", got, req)
	}
}
