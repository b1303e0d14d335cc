package conversation

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// approvals reads the phases the task gates, from its task_created.
func (s *Service) approvals(ctx context.Context, taskID string) ([]ipa.Phase, error) {
	evs, err := s.st.ReadEvents(ctx, ipa.EventQuery{TaskID: taskID, Types: []string{ipa.EventTaskCreated}, Limit: 1})
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	var d ipa.TaskCreatedData
	if err := json.Unmarshal(evs[0].Data, &d); err != nil {
		return nil, fmt.Errorf("decode task_created of %s: %w", taskID, err)
	}
	return d.Approvals, nil
}

// Gate decides a move into phase to by actor (a person or a runtime). When
// the task lists to in its approvals, the move does not happen: it records
// transition_requested and opens an APPROVAL request (input_requested with
// the transition), or finds one open for the same move, and reports gated.
// A move the phase rules refuse is refused as without a gate.
func (s *Service) Gate(ctx context.Context, taskID, actor string, to ipa.Phase, note string, expected *int64) (*ipa.Task, bool, error) {
	gates, err := s.approvals(ctx, taskID)
	if err != nil || !slices.Contains(gates, to) {
		return nil, false, err
	}
	t, err := s.decide(ctx, taskID, actor, expected, func(t *ipa.Task, c *ipa.Conversation) ([]ipa.NewEvent, error) {
		if err := ipa.CheckPhaseTransition(t.Phase, to); err != nil {
			return nil, err
		}
		for _, r := range c.Pending() {
			if r.Transition != nil && r.Transition.From == t.Phase && r.Transition.To == to {
				return nil, nil // already waiting for this move's approval
			}
		}
		id := newID()
		tr := ipa.TransitionData{RequestID: id, From: t.Phase, To: to, Note: note}
		prompt := fmt.Sprintf("Move %q from %s to %s?", t.Title, t.Phase, to)
		if note != "" {
			prompt += " " + note
		}
		if len([]rune(prompt)) > ipa.MaxPromptChars {
			prompt = string([]rune(prompt)[:ipa.MaxPromptChars])
		}
		return []ipa.NewEvent{
			{ID: id, Type: ipa.EventTransitionRequested, Data: tr},
			{Type: ipa.EventInputRequested, Data: ipa.InputRequestedData{RequestID: id, Kind: ipa.InputApproval, Prompt: prompt,
				Options: []string{}, Transition: &tr}, CausationID: id},
		}, nil
	})
	if err != nil {
		return nil, true, err
	}
	return t, true, nil
}

// gateAnswer is what answering a phase gate's request records besides
// input_answered: transition_approved and phase_changed, or
// transition_rejected. The requester may not approve its own move.
func gateAnswer(t *ipa.Task, r *ipa.InputRequest, actor string, approve *bool, comment string) ([]ipa.NewEvent, error) {
	if actor == r.RequestedBy {
		return nil, ipa.Errorf(ipa.EFORBIDDEN, ipa.ReasonSelfApproval, "A move into a gated phase needs the approval of someone other than its requester (%s).", r.RequestedBy)
	}
	tr := *r.Transition
	if approve == nil || !*approve {
		return []ipa.NewEvent{{Type: ipa.EventTransitionRejected, Data: tr, CausationID: r.ID}}, nil
	}
	if t.Phase != tr.From {
		return nil, ipa.Errorf(ipa.ECONFLICT, ipa.ReasonInvalidTransition, "The task moved to %s since the move from %s to %s was requested.", t.Phase, tr.From, tr.To)
	}
	note := tr.Note
	if comment != "" {
		note = comment
	}
	change, err := ipa.PhaseChange(t, tr.To, note, r.ID)
	if err != nil {
		return nil, err
	}
	return []ipa.NewEvent{{Type: ipa.EventTransitionApproved, Data: tr, CausationID: r.ID}, change}, nil
}
