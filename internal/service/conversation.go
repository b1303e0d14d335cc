package service

import (
	"context"
	"encoding/json"

	"github.com/google/uuid"

	"github.com/ipa-dev/ipa/internal/conversation"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// ConversationService is conversations with pods as people see them:
// viewers read them, operators send messages and answer requests, and every
// write carries its actor.
type ConversationService struct{ conv *conversation.Service }

// NewConversationService returns the service over conv.
func NewConversationService(conv *conversation.Service) *ConversationService {
	return &ConversationService{conv: conv}
}

// SendMessage records message_sent. Requires OPERATOR.
func (s *ConversationService) SendMessage(ctx context.Context, taskID, text string, data json.RawMessage, expected *int64) (*ipa.Task, *ipa.Message, error) {
	a, err := ipa.RequireRole(ctx, ipa.RoleOperator)
	if err != nil {
		return nil, nil, err
	}
	t, m, err := s.conv.SendMessage(ctx, a.ID, taskID, text, data, expected)
	if err != nil {
		return nil, nil, err
	}
	return t, &m, nil
}

// Answer records input_answered. Requires OPERATOR.
func (s *ConversationService) Answer(ctx context.Context, requestID string, answer *string, approve *bool, comment string) (*ipa.Task, *ipa.InputRequest, error) {
	a, err := ipa.RequireRole(ctx, ipa.RoleOperator)
	if err != nil {
		return nil, nil, err
	}
	return s.conv.Answer(ctx, a.ID, requestID, answer, approve, comment)
}

// Messages lists a task's messages. Requires VIEWER.
func (s *ConversationService) Messages(ctx context.Context, taskID string) ([]ipa.Message, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	return s.conv.Messages(ctx, taskID)
}

// Pending lists a task's pending requests. Requires VIEWER.
func (s *ConversationService) Pending(ctx context.Context, taskID string) ([]ipa.InputRequest, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	return s.conv.Pending(ctx, taskID)
}

// InputRequests lists requests across tasks. Requires VIEWER. first is 1 to
// 1000 (default 100).
func (s *ConversationService) InputRequests(ctx context.Context, state ipa.InputState, first *int, after string) ([]ipa.InputRequest, bool, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, false, err
	}
	n := 100
	if first != nil {
		n = *first
	}
	if n < 1 || n > 1000 {
		return nil, false, invalidArg("first must be 1 to 1000.")
	}
	if state != "" && !state.Valid() {
		return nil, false, invalidArg("Unknown state %q.", state)
	}
	// A cursor is a request id as this list returned it; anything else
	// would page from an arbitrary place in the id order.
	if after != "" {
		if id, err := uuid.Parse(after); err != nil || id.String() != after {
			return nil, false, invalidArg("after is not a cursor of this list; use an edge's cursor.")
		}
	}
	return s.conv.InputRequests(ctx, state, after, n)
}

// Request returns one input request, nil when there is none. Requires VIEWER.
func (s *ConversationService) Request(ctx context.Context, id string) (*ipa.InputRequest, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	r, err := s.conv.Request(ctx, id)
	if ie, ok := err.(*ipa.Error); ok && ie.Code == ipa.ENOTFOUND {
		return nil, nil
	}
	return r, err
}

// Account returns a task's usage and budget. Requires VIEWER.
func (s *ConversationService) Account(ctx context.Context, taskID string) (conversation.Account, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return conversation.Account{}, err
	}
	return s.conv.Account(ctx, taskID)
}

// SumUsage sums the usage of the tasks matching filter, reading them a
// page at a time through tasks. Requires VIEWER.
func (s *ConversationService) SumUsage(ctx context.Context, tasks *TaskService, filter ipa.TaskFilter) (ipa.Usage, error) {
	var sum ipa.Usage
	var after *string
	for {
		page, err := tasks.ListTasks(ctx, ListTasksInput{First: MaxPageSize, After: after, Filter: filter, Order: ipa.DefaultTaskOrder})
		if err != nil {
			return ipa.Usage{}, err
		}
		for _, t := range page.Tasks {
			a, err := s.conv.Account(ctx, t.ID)
			if err != nil {
				return ipa.Usage{}, err
			}
			sum = sum.Add(a.Usage)
		}
		if !page.HasNextPage || len(page.Cursors) == 0 {
			return sum, nil
		}
		after = &page.Cursors[len(page.Cursors)-1]
	}
}
