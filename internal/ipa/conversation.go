package ipa

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Conversation events: messages a person sends to a running pod, and the
// questions a runtime asks a person. Every one of them is in the task's
// stream, so what is pending is always derivable from it (FoldConversation).
const (
	EventMessageSent      = "message_sent"
	EventMessageDelivered = "message_delivered"
	EventInputRequested   = "input_requested"
	EventInputAnswered    = "input_answered"
	EventInputExpired     = "input_expired"
	// EventInputReasked: a new run of the pod asked, unkeyed, what an
	// ended run had asked, and got that request (see Conversation.Reusable).
	EventInputReasked = "input_reasked"

	// Phase gates: a move into a phase the task lists in its approvals.
	EventTransitionRequested = "transition_requested"
	EventTransitionApproved  = "transition_approved"
	EventTransitionRejected  = "transition_rejected"
)

// ConversationEventTypes are the event types FoldConversation reads,
// together with the closing events (which cancel pending requests).
var ConversationEventTypes = []string{
	EventMessageSent, EventMessageDelivered, EventInputRequested, EventInputAnswered, EventInputExpired,
	EventInputReasked, EventTaskCompleted, EventTaskCancelled,
	// The pod's runs: which run asked a request, and whether it has ended.
	EventPodStarted, EventPodReattached, EventPodStopped, EventPodCrashed, EventPodLost,
}

// InputKind is what a runtime asks for.
type InputKind string

// Input kinds.
const (
	InputQuestion InputKind = "QUESTION"
	InputApproval InputKind = "APPROVAL"
	InputChoice   InputKind = "CHOICE"
)

// Valid reports whether k is a known kind.
func (k InputKind) Valid() bool {
	return k == InputQuestion || k == InputApproval || k == InputChoice
}

// InputState is where a request stands.
type InputState string

// Input request states.
const (
	InputPending   InputState = "PENDING"
	InputAnswered  InputState = "ANSWERED"
	InputExpired   InputState = "EXPIRED"
	InputCancelled InputState = "CANCELLED"
)

// Valid reports whether s is a known state.
func (s InputState) Valid() bool {
	return s == InputPending || s == InputAnswered || s == InputExpired || s == InputCancelled
}

// Limits of what a conversation carries.
const (
	MaxMessageChars  = 16 << 10
	MaxMessageData   = 64 << 10
	MaxPromptChars   = 4 << 10
	MaxAnswerChars   = 16 << 10
	MaxInputOptions  = 50
	MaxOptionChars   = 200
	MaxRequestKeyLen = 200
)

// Reasons of conversation errors.
const (
	ReasonAlreadyAnswered = "ALREADY_ANSWERED"
	ReasonRequestNotFound = "REQUEST_NOT_FOUND"
	ReasonRequestClosed   = "REQUEST_CLOSED"
	ReasonSelfApproval    = "SELF_APPROVAL"
	// ReasonApprovalPending refuses a runtime's move into a gated phase:
	// the request for approval is open (or was just opened).
	ReasonApprovalPending = "APPROVAL_PENDING"
)

// TransitionData is the data of transition_requested, transition_approved
// and transition_rejected, and the transition an approval request is for.
type TransitionData struct {
	RequestID string `json:"requestId"`
	From      Phase  `json:"from"`
	To        Phase  `json:"to"`
	Note      string `json:"note,omitempty"`
}

// MessageSentData is the data of message_sent.
type MessageSentData struct {
	MessageID string          `json:"messageId"`
	Text      string          `json:"text"`
	Data      json.RawMessage `json:"data"` // null when none was sent (nil, never empty)
}

// MessageDeliveredData is the data of message_delivered.
type MessageDeliveredData struct {
	MessageID string `json:"messageId"`
}

// InputRequestedData is the data of input_requested. Key is the runtime's
// own name for the request: asking again with the same key is the same
// request (so a restarted runtime gets the answer given meanwhile).
type InputRequestedData struct {
	RequestID string     `json:"requestId"`
	Kind      InputKind  `json:"kind"`
	Prompt    string     `json:"prompt"`
	Options   []string   `json:"options"`
	ExpiresAt *time.Time `json:"expiresAt"`
	Key       string     `json:"key,omitempty"`
	// Transition, for a phase gate's approval: the move it approves.
	Transition *TransitionData `json:"transition,omitempty"`
}

// InputAnsweredData is the data of input_answered.
type InputAnsweredData struct {
	RequestID string  `json:"requestId"`
	Answer    *string `json:"answer"`
	Approved  *bool   `json:"approved"`
	Comment   string  `json:"comment,omitempty"`
}

// InputExpiredData is the data of input_expired.
type InputExpiredData struct {
	RequestID string `json:"requestId"`
}

// Message is one message sent to a task's pod.
type Message struct {
	ID          string
	TaskID      string
	Text        string
	Data        json.RawMessage // nil when none
	SentBy      string
	SentAt      time.Time
	Version     int64 // the version of its message_sent event
	Delivered   bool
	DeliveredAt *time.Time
}

// InputRequest is one question a runtime asked.
type InputRequest struct {
	ID         string
	TaskID     string
	Key        string
	Kind       InputKind
	Prompt     string
	Options    []string
	State      InputState
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	Answer     *string
	Approved   *bool
	Comment    string
	AnsweredBy string
	AnsweredAt *time.Time
	Version    int64 // the version of its input_requested event
	// RequestedBy is the actor that asked (the runtime, or the person whose
	// move a phase gate stopped).
	RequestedBy string
	Transition  *TransitionData // a phase gate's move; nil otherwise
	// Run is the pod run that asked it last (the id of the run's
	// pod_started), "" when unknown; AskedAs the keys of the later asks
	// that reused it (input_reasked). EndedUnheard: it was answered or
	// expired after Run had ended, so no run has had its answer.
	Run          string
	AskedAs      []string
	EndedUnheard bool
}

// Conversation is what a task's stream says about its messages and requests,
// each in stream order.
type Conversation struct {
	Messages []Message
	Requests []InputRequest
	runs     podRuns
}

// Request returns the request with id, nil when there is none.
func (c *Conversation) Request(id string) *InputRequest {
	for i := range c.Requests {
		if c.Requests[i].ID == id {
			return &c.Requests[i]
		}
	}
	return nil
}

// RequestByKey returns the request a runtime asked under key, nil when none.
func (c *Conversation) RequestByKey(key string) *InputRequest {
	if key == "" {
		return nil
	}
	for i := range c.Requests {
		if c.Requests[i].Key == key || slices.Contains(c.Requests[i].AskedAs, key) {
			return &c.Requests[i]
		}
	}
	return nil
}

// Pending returns the requests still waiting for an answer.
func (c *Conversation) Pending() []InputRequest {
	var out []InputRequest
	for _, r := range c.Requests {
		if r.State == InputPending {
			out = append(out, r)
		}
	}
	return out
}

// Undelivered returns the messages the pod has not acknowledged, in order.
func (c *Conversation) Undelivered() []Message {
	var out []Message
	for _, m := range c.Messages {
		if !m.Delivered {
			out = append(out, m)
		}
	}
	return out
}

// FoldConversation builds a task's conversation from its events (any
// subset holding ConversationEventTypes, in version order). Only the first
// ending of a request counts; closing the task cancels what is pending.
func FoldConversation(events []Event) (Conversation, error) {
	var c Conversation
	msgs := map[string]int{}
	for _, e := range events {
		c.runs.apply(e)
		switch e.Type {
		case EventMessageSent:
			var d MessageSentData
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return c, fmt.Errorf("decode %s of %s: %w", e.Type, e.TaskID, err)
			}
			msgs[d.MessageID] = len(c.Messages)
			var data json.RawMessage
			if len(d.Data) > 0 && string(d.Data) != "null" {
				data = d.Data
			}
			c.Messages = append(c.Messages, Message{ID: d.MessageID, TaskID: e.TaskID, Text: d.Text, Data: data,
				SentBy: e.ActorID, SentAt: e.OccurredAt, Version: e.Version})
		case EventMessageDelivered:
			var d MessageDeliveredData
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return c, fmt.Errorf("decode %s of %s: %w", e.Type, e.TaskID, err)
			}
			if i, ok := msgs[d.MessageID]; ok && !c.Messages[i].Delivered {
				at := e.OccurredAt
				c.Messages[i].Delivered, c.Messages[i].DeliveredAt = true, &at
			}
		case EventInputRequested:
			var d InputRequestedData
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return c, fmt.Errorf("decode %s of %s: %w", e.Type, e.TaskID, err)
			}
			c.Requests = append(c.Requests, InputRequest{ID: d.RequestID, TaskID: e.TaskID, Key: d.Key, Kind: d.Kind,
				Prompt: d.Prompt, Options: d.Options, State: InputPending, CreatedAt: e.OccurredAt,
				ExpiresAt: utcPtr(d.ExpiresAt), Version: e.Version, RequestedBy: e.ActorID, Transition: d.Transition,
				Run: c.runs.asker(e.CausationID)})
		case EventInputReasked:
			var d InputReaskedData
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return c, fmt.Errorf("decode %s of %s: %w", e.Type, e.TaskID, err)
			}
			if r := c.Request(d.RequestID); r != nil {
				// Its answer, if any, now reaches a live run: heard.
				r.Run, r.EndedUnheard = c.runs.asker(e.CausationID), false
				r.AskedAs = append(r.AskedAs, d.Key)
			}
		case EventInputAnswered:
			var d InputAnsweredData
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return c, fmt.Errorf("decode %s of %s: %w", e.Type, e.TaskID, err)
			}
			if r := c.Request(d.RequestID); r != nil && r.State == InputPending {
				at := e.OccurredAt
				r.State, r.Answer, r.Approved, r.Comment, r.AnsweredBy, r.AnsweredAt = InputAnswered, d.Answer, d.Approved, d.Comment, e.ActorID, &at
				r.EndedUnheard = c.runs.ended(r.Run)
			}
		case EventInputExpired:
			var d InputExpiredData
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return c, fmt.Errorf("decode %s of %s: %w", e.Type, e.TaskID, err)
			}
			if r := c.Request(d.RequestID); r != nil && r.State == InputPending {
				at := e.OccurredAt
				r.State, r.AnsweredAt = InputExpired, &at
				r.EndedUnheard = c.runs.ended(r.Run)
			}
		case EventTaskCompleted, EventTaskCancelled:
			for i := range c.Requests {
				if c.Requests[i].State == InputPending {
					at := e.OccurredAt
					c.Requests[i].State, c.Requests[i].AnsweredAt = InputCancelled, &at
				}
			}
		}
	}
	return c, nil
}
