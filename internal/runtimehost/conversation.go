package runtimehost

import (
	"context"

	"github.com/ipa-dev/ipa/internal/conversation"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// ConversingHost is a Host that also holds the task's conversation
// (podapi.Conversing): the messages people send reach the runtime, and its
// questions reach people. Bound to the task like every Host call.
type ConversingHost struct {
	*Host
	conv *conversation.Service
}

var _ podapi.Conversing = (*ConversingHost)(nil)

// Messages streams the task's undelivered messages, then new ones.
func (h *ConversingHost) Messages(ctx context.Context, fn func(podapi.Message) error) error {
	return h.conv.StreamMessages(ctx, h.taskID, func(m ipa.Message) error {
		return fn(podapi.Message{ID: m.ID, Text: m.Text, Data: m.Data, SentBy: m.SentBy, SentAt: m.SentAt})
	})
}

// AckMessage records message_delivered, once.
func (h *ConversingHost) AckMessage(ctx context.Context, messageID string) error {
	return h.conv.Ack(ctx, h.taskID, Actor(h.runtime), messageID)
}

// Ask records the request (once per key; an unkeyed one a restarted run
// asks again is the ended run's) and waits for its end.
func (h *ConversingHost) Ask(ctx context.Context, req podapi.AskRequest) (podapi.AskResponse, error) {
	return h.conv.AskIn(ctx, h.taskID, Actor(h.runtime), h.cause, req)
}

// RequestPhase is Host.RequestPhase behind the task's phase gates: a move
// into a phase the task lists in its approvals opens an approval request (or
// finds it open) and is refused with CONFLICT/APPROVAL_PENDING and the
// current phase; the runtime waits and asks again (it moves once a person
// other than the runtime approved).
func (h *ConversingHost) RequestPhase(ctx context.Context, req podapi.PhaseRequest) (podapi.PhaseResponse, error) {
	if req.To != "" {
		t, gated, err := h.conv.Gate(ctx, h.taskID, Actor(h.runtime), ipa.Phase(req.To), req.Note, nil)
		if err != nil {
			if cur, gerr := h.r.GetTask(ctx, h.taskID); gerr == nil {
				return podapi.PhaseResponse{Phase: string(cur.Phase)}, err
			}
			return podapi.PhaseResponse{}, err
		}
		if gated {
			return podapi.PhaseResponse{Phase: string(t.Phase)}, ipa.Errorf(ipa.ECONFLICT, ipa.ReasonApprovalPending,
				"Moving into %s needs a person's approval; the request is open.", req.To)
		}
	}
	return h.Host.RequestPhase(ctx, req)
}

// ReportUsage records usage_reported; a task then over its budget has its
// pod stopped.
func (h *ConversingHost) ReportUsage(ctx context.Context, u podapi.Usage) error {
	return h.conv.ReportUsage(ctx, h.taskID, Actor(h.runtime), u)
}
