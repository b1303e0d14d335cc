package pod

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/ipa-dev/ipa/internal/podapi"
)

// ErrUnsupported is returned by Host.Messages and Host.Ask when the server
// is older than protocol version 3. Test with errors.Is.
var ErrUnsupported = podapi.ErrUnsupported

var _ Conversing = host{}

// Message is one message a person sent to the task.
type Message struct {
	ID     string
	Text   string
	Data   json.RawMessage // nil when none
	SentBy string          // the sender's actor id
	SentAt time.Time
}

// Kinds of request.
const (
	KindQuestion = "QUESTION"
	KindApproval = "APPROVAL"
	KindChoice   = "CHOICE"
)

// AskRequest is a question for a person.
type AskRequest struct {
	// Key names the request within the task; asking again with it returns
	// the same request's answer. Empty: a new request (retried under one
	// key across server restarts within this call).
	Key     string
	Kind    string // KindQuestion (default), KindApproval or KindChoice
	Prompt  string
	Options []string      // KindChoice: the choices (the answer is one of them)
	Timeout time.Duration // 0: no expiry
}

// States a request ends in.
const (
	StateAnswered  = "ANSWERED"
	StateExpired   = "EXPIRED"
	StateCancelled = "CANCELLED"
)

// Answer is how a request ended.
type Answer struct {
	RequestID  string
	State      string // StateAnswered, StateExpired or StateCancelled
	Text       string // the answer (QUESTION, CHOICE; an approval's optional text)
	Approved   bool   // APPROVAL: approved
	Comment    string
	AnsweredBy string // the actor who answered
}

// retryHost is how long the SDK waits before calling a host that was
// unavailable (restarting) again.
const retryHost = 250 * time.Millisecond

func conversing(h podapi.Host) (podapi.Conversing, bool) {
	c, ok := h.(podapi.Conversing)
	return c, ok
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (h host) Messages(ctx context.Context, fn func(Message) error) error {
	c, ok := conversing(h.h)
	if !ok {
		return ErrUnsupported
	}
	seen := map[string]bool{}
	for {
		var fnErr error
		err := c.Messages(ctx, func(m podapi.Message) error {
			if !seen[m.ID] {
				if fnErr = fn(Message{ID: m.ID, Text: m.Text, Data: m.Data, SentBy: m.SentBy, SentAt: m.SentAt}); fnErr != nil {
					return fnErr
				}
				seen[m.ID] = true
			}
			// The ack may be lost with the host; the next stream sends the
			// message again and seen keeps fn from getting it twice.
			return c.AckMessage(ctx, m.ID)
		})
		switch {
		case fnErr != nil:
			return fnErr
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, podapi.ErrUnsupported):
			return ErrUnsupported
		case err != nil && !errors.Is(err, podapi.ErrHostUnavailable):
			return fromEngine(err)
		}
		if err := sleepCtx(ctx, retryHost); err != nil {
			return err
		}
	}
}

func (h host) Ask(ctx context.Context, req AskRequest) (Answer, error) {
	c, ok := conversing(h.h)
	if !ok {
		return Answer{}, ErrUnsupported
	}
	if req.Key == "" {
		req.Key = podapi.AutoKeyPrefix + uuid.NewString()
	}
	if req.Kind == "" {
		req.Kind = KindQuestion
	}
	for {
		resp, err := c.Ask(ctx, podapi.AskRequest{Key: req.Key, Kind: req.Kind, Prompt: req.Prompt, Options: req.Options, Timeout: req.Timeout})
		switch {
		case err == nil:
			a := Answer{RequestID: resp.RequestID, State: resp.State, Text: resp.Answer, Comment: resp.Comment, AnsweredBy: resp.AnsweredBy}
			if resp.Approved != nil {
				a.Approved = *resp.Approved
			}
			return a, nil
		case ctx.Err() != nil:
			return Answer{}, ctx.Err()
		case errors.Is(err, podapi.ErrUnsupported):
			return Answer{}, ErrUnsupported
		case !errors.Is(err, podapi.ErrHostUnavailable):
			return Answer{}, fromEngine(err)
		}
		if err := sleepCtx(ctx, retryHost); err != nil {
			return Answer{}, err
		}
	}
}

// Usage is what the work used since its previous report.
type Usage struct {
	InputTokens  int64
	OutputTokens int64
	CostMicros   int64 // in millionths of the currency unit
}

// UsageReporter is implemented by the Host the SDK hands a runtime
// (protocol version 3): report what the work used, as usage_reported; the
// server totals it in Task.usage and stops the pod (pod_stopped with reason
// "budget") when the task's budget is exceeded. Get it with a type
// assertion, req.Host.(pod.UsageReporter).
type UsageReporter interface {
	ReportUsage(ctx context.Context, u Usage) error
}

var _ UsageReporter = host{}

func (h host) ReportUsage(ctx context.Context, u Usage) error {
	r, ok := h.h.(podapi.UsageReporting)
	if !ok {
		return ErrUnsupported
	}
	return fromEngine(r.ReportUsage(ctx, podapi.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, CostMicros: u.CostMicros}))
}
