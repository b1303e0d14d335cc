// Package conversation is what goes between people and a running pod:
// messages in (sendMessage → message_sent, acknowledged by the runtime with
// message_delivered) and questions out (a runtime asks → input_requested,
// answerRequest → input_answered, expiry → input_expired, the task's close
// cancels). Every fact is an event in the task's stream, so what is pending
// is rebuilt from the stream (ipa.FoldConversation) by whichever server
// reads it: a restarted pod or server, or the instance that owns the pod
// while the message came in through another (the live feed crosses
// instances).
//
// Writes decide on the conversation folded at the task's version V and
// append with V as the expected version; a lost race folds again. So a
// request is answered once, expires once, and a key asks once, whichever
// instance writes.
package conversation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// Store is what the service reads.
type Store interface {
	GetTask(ctx context.Context, id string) (*ipa.Task, error)
	ReadEvents(ctx context.Context, q ipa.EventQuery) ([]ipa.Event, error)
	RequestTask(ctx context.Context, id string) (string, error)
	ListRequests(ctx context.Context, state ipa.InputState, after string, limit int) ([]store.RequestRef, error)
	DueRequests(ctx context.Context, now time.Time, limit int) ([]store.RequestRef, error)
}

// Feed is the live feed of a task's events (across instances).
type Feed interface {
	TaskEvents(ctx context.Context, taskID string, after *int64) (<-chan *ipa.Event, error)
}

// Service holds conversations, and the usage and budgets of tasks. Create
// it with New.
type Service struct {
	st     Store
	w      *eventlog.Writer
	feed   Feed
	now    func() time.Time
	pods   Pods
	active ActiveTasks
	log    *slog.Logger

	bg       sync.WaitGroup
	bgCtx    context.Context
	bgCancel context.CancelFunc
}

// ActiveTasks lists the tasks whose pods run.
type ActiveTasks interface {
	ActivePodTasks(ctx context.Context) ([]*ipa.Task, error)
}

// New returns the conversation service. st, when it also lists active
// tasks, lets the budget sweep check their pod time.
func New(st Store, w *eventlog.Writer, feed Feed, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	s := &Service{st: st, w: w, feed: feed, now: time.Now, log: log}
	s.active, _ = st.(ActiveTasks)
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	return s
}

// appendAt is an append expected at version v.
func appendAt(taskID string, v *int64, decide ipa.DecideFunc) eventlog.Append {
	return eventlog.Append{TaskID: taskID, Expected: v, Actor: "system", Decide: decide}
}

// maxRaces bounds how often a write folds again after losing a race.
const maxRaces = 50

// Load folds the task's conversation at the task's current version, and
// returns both.
func (s *Service) Load(ctx context.Context, taskID string) (*ipa.Task, ipa.Conversation, error) {
	t, err := s.st.GetTask(ctx, taskID)
	if err != nil {
		return nil, ipa.Conversation{}, err
	}
	var evs []ipa.Event
	after := int64(0)
	for {
		page, err := s.st.ReadEvents(ctx, ipa.EventQuery{TaskID: taskID, After: after, Types: ipa.ConversationEventTypes, Limit: 5000})
		if err != nil {
			return nil, ipa.Conversation{}, err
		}
		for _, e := range page {
			if e.Version <= t.Version {
				evs = append(evs, e)
			}
		}
		if len(page) < 5000 {
			break
		}
		after = page[len(page)-1].Version
	}
	c, err := ipa.FoldConversation(evs)
	return t, c, err
}

// decide folds the conversation, runs fn on it and appends its events at
// that version, folding again when another writer got in first. expected,
// when set, is the version the client named: a mismatch is a conflict.
func (s *Service) decide(ctx context.Context, taskID, actor string, expected *int64,
	fn func(t *ipa.Task, c *ipa.Conversation) ([]ipa.NewEvent, error)) (*ipa.Task, error) {
	for race := 0; ; race++ {
		t, c, err := s.Load(ctx, taskID)
		if err != nil {
			return nil, err
		}
		if expected != nil && *expected != t.Version {
			return nil, ipa.VersionConflict(*expected, t.Version)
		}
		news, err := fn(t, &c)
		if err != nil || len(news) == 0 {
			return t, err
		}
		v := t.Version
		next, _, err := s.w.Append(ctx, eventlog.Append{TaskID: taskID, Expected: &v, Actor: actor,
			Decide: func(*ipa.Task) ([]ipa.NewEvent, error) { return news, nil }})
		var ie *ipa.Error
		if err != nil && expected == nil && race < maxRaces && errors.As(err, &ie) && ie.Reason == ipa.ReasonVersionConflict {
			continue
		}
		return next, err
	}
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

func invalid(format string, args ...any) *ipa.Error {
	return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, format, args...)
}

// text checks free text as descriptions are checked (ipa.CheckMultiline:
// valid UTF-8, no control character but tab, newline and carriage return),
// at most max characters.
func text(field, v string, max int, required bool) error {
	if required && strings.TrimSpace(v) == "" {
		return invalid("%s must not be empty.", field)
	}
	if err := ipa.CheckMultiline(field, v); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(v); n > max {
		return invalid("%s has %d characters; the limit is %d.", field, n, max)
	}
	return nil
}

// SendMessage records message_sent. data, when given, must be JSON.
func (s *Service) SendMessage(ctx context.Context, actor, taskID, msg string, data json.RawMessage, expected *int64) (*ipa.Task, ipa.Message, error) {
	if err := text("text", msg, ipa.MaxMessageChars, true); err != nil {
		return nil, ipa.Message{}, err
	}
	if len(data) > 0 && string(data) != "null" {
		if len(data) > ipa.MaxMessageData {
			return nil, ipa.Message{}, invalid("data is %d bytes; the limit is %d.", len(data), ipa.MaxMessageData)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, data); err != nil {
			return nil, ipa.Message{}, invalid("data must be JSON.")
		}
		data = buf.Bytes()
	} else {
		data = nil
	}
	id := newID()
	t, err := s.decide(ctx, taskID, actor, expected, func(t *ipa.Task, _ *ipa.Conversation) ([]ipa.NewEvent, error) {
		if err := ipa.ClosedTaskError(t.Status); err != nil {
			return nil, err
		}
		return []ipa.NewEvent{{Type: ipa.EventMessageSent, Data: ipa.MessageSentData{MessageID: id, Text: msg, Data: data}}}, nil
	})
	if err != nil {
		return nil, ipa.Message{}, err
	}
	return t, ipa.Message{ID: id, TaskID: taskID, Text: msg, Data: data, SentBy: actor, SentAt: t.UpdatedAt, Version: t.Version}, nil
}

// Messages lists the task's messages, in order.
func (s *Service) Messages(ctx context.Context, taskID string) ([]ipa.Message, error) {
	_, c, err := s.Load(ctx, taskID)
	return c.Messages, err
}

// Pending lists the task's pending requests, in order.
func (s *Service) Pending(ctx context.Context, taskID string) ([]ipa.InputRequest, error) {
	_, c, err := s.Load(ctx, taskID)
	return c.Pending(), err
}

// Request returns one request, ENOTFOUND (REQUEST_NOT_FOUND) when there is
// none.
func (s *Service) Request(ctx context.Context, id string) (*ipa.InputRequest, error) {
	taskID, err := s.st.RequestTask(ctx, id)
	if err != nil {
		return nil, err
	}
	if taskID == "" {
		return nil, requestNotFound(id)
	}
	_, c, err := s.Load(ctx, taskID)
	if err != nil {
		return nil, err
	}
	r := c.Request(id)
	if r == nil {
		return nil, requestNotFound(id)
	}
	return r, nil
}

func requestNotFound(id string) *ipa.Error {
	return ipa.Errorf(ipa.ENOTFOUND, ipa.ReasonRequestNotFound, "No input request with id %q.", id)
}

// InputRequests lists requests across tasks in state (all when empty),
// oldest first, after the request id after, at most limit; more reports
// whether others follow.
func (s *Service) InputRequests(ctx context.Context, state ipa.InputState, after string, limit int) ([]ipa.InputRequest, bool, error) {
	refs, err := s.st.ListRequests(ctx, state, after, limit+1)
	if err != nil {
		return nil, false, err
	}
	more := len(refs) > limit
	if more {
		refs = refs[:limit]
	}
	convs := map[string]ipa.Conversation{}
	out := make([]ipa.InputRequest, 0, len(refs))
	for _, ref := range refs {
		c, ok := convs[ref.TaskID]
		if !ok {
			if _, c, err = s.Load(ctx, ref.TaskID); err != nil {
				var ie *ipa.Error
				if errors.As(err, &ie) && ie.Code == ipa.ENOTFOUND {
					continue // deleted meanwhile
				}
				return nil, false, err
			}
			convs[ref.TaskID] = c
		}
		if r := c.Request(ref.ID); r != nil {
			out = append(out, *r)
		}
	}
	return out, more, nil
}

// Answer records input_answered for a pending request. A request answered
// before: CONFLICT/ALREADY_ANSWERED; expired or cancelled: CONFLICT/
// REQUEST_CLOSED.
func (s *Service) Answer(ctx context.Context, actor, requestID string, answer *string, approve *bool, comment string) (*ipa.Task, *ipa.InputRequest, error) {
	if answer != nil {
		if err := text("answer", *answer, ipa.MaxAnswerChars, false); err != nil {
			return nil, nil, err
		}
	}
	if err := text("comment", comment, ipa.MaxAnswerChars, false); err != nil {
		return nil, nil, err
	}
	taskID, err := s.st.RequestTask(ctx, requestID)
	if err != nil {
		return nil, nil, err
	}
	if taskID == "" {
		return nil, nil, requestNotFound(requestID)
	}
	t, err := s.decide(ctx, taskID, actor, nil, func(t *ipa.Task, c *ipa.Conversation) ([]ipa.NewEvent, error) {
		r := c.Request(requestID)
		if r == nil {
			return nil, requestNotFound(requestID)
		}
		if err := closedRequest(r); err != nil {
			return nil, err
		}
		if err := checkAnswer(r, answer, approve); err != nil {
			return nil, err
		}
		evs := []ipa.NewEvent{{Type: ipa.EventInputAnswered, Data: ipa.InputAnsweredData{RequestID: requestID, Answer: answer, Approved: approve, Comment: comment}}}
		if r.Transition != nil {
			more, err := gateAnswer(t, r, actor, approve, comment)
			if err != nil {
				return nil, err
			}
			evs = append(evs, more...)
		}
		return evs, nil
	})
	if err != nil {
		return nil, nil, err
	}
	r, err := s.Request(ctx, requestID)
	return t, r, err
}

func closedRequest(r *ipa.InputRequest) error {
	switch r.State {
	case ipa.InputAnswered:
		return ipa.Errorf(ipa.ECONFLICT, ipa.ReasonAlreadyAnswered, "The request was already answered.")
	case ipa.InputExpired:
		return ipa.Errorf(ipa.ECONFLICT, ipa.ReasonRequestClosed, "The request expired.")
	case ipa.InputCancelled:
		return ipa.Errorf(ipa.ECONFLICT, ipa.ReasonRequestClosed, "The request was cancelled (its task closed).")
	}
	return nil
}

// checkAnswer checks an answer against its request's kind: an approval
// needs approve, a question an answer, a choice one of its options.
func checkAnswer(r *ipa.InputRequest, answer *string, approve *bool) error {
	switch r.Kind {
	case ipa.InputApproval:
		if approve == nil {
			return invalid("An approval is answered with approve: true or false.")
		}
	case ipa.InputChoice:
		if answer == nil || !contains(r.Options, *answer) {
			return invalid("A choice is answered with one of its options: %s.", strings.Join(r.Options, ", "))
		}
	default:
		if answer == nil {
			return invalid("A question is answered with an answer.")
		}
	}
	return nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Expire records input_expired for a request still pending whose expiry has
// passed; anything else is left alone. It reports whether it expired it.
func (s *Service) Expire(ctx context.Context, taskID, requestID string) (bool, error) {
	done := false
	_, err := s.decide(ctx, taskID, "system", nil, func(t *ipa.Task, c *ipa.Conversation) ([]ipa.NewEvent, error) {
		r := c.Request(requestID)
		if r == nil || r.State != ipa.InputPending || r.ExpiresAt == nil || s.now().Before(*r.ExpiresAt) {
			return nil, nil
		}
		done = true
		return []ipa.NewEvent{{Type: ipa.EventInputExpired, Data: ipa.InputExpiredData{RequestID: requestID}}}, nil
	})
	return done && err == nil, err
}

// ExpireDue expires a batch of requests whose expiry passed: the durable
// timer's sweep (the expiries are rows of the store). It returns how many
// it looked at.
func (s *Service) ExpireDue(ctx context.Context) (int, error) {
	refs, err := s.st.DueRequests(ctx, s.now(), 100)
	if err != nil {
		return 0, err
	}
	for _, r := range refs {
		if _, err := s.Expire(ctx, r.TaskID, r.ID); err != nil {
			var ie *ipa.Error
			if errors.As(err, &ie) && ie.Code == ipa.ENOTFOUND {
				continue
			}
			return 0, err
		}
	}
	return len(refs), nil
}
