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

// Ask records the request (once per key) and waits for its end.
func (h *ConversingHost) Ask(ctx context.Context, req podapi.AskRequest) (podapi.AskResponse, error) {
	return h.conv.Ask(ctx, h.taskID, Actor(h.runtime), req)
}
