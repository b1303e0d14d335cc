package conversation

import (
	"context"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// MaxTimeout is the longest expiry a runtime may give a request.
const MaxTimeout = 30 * 24 * time.Hour

// Ack records message_delivered for a message not yet delivered.
func (s *Service) Ack(ctx context.Context, taskID, actor, messageID string) error {
	_, err := s.decide(ctx, taskID, actor, nil, func(_ *ipa.Task, c *ipa.Conversation) ([]ipa.NewEvent, error) {
		for _, m := range c.Messages {
			if m.ID == messageID {
				if m.Delivered {
					return nil, nil
				}
				return []ipa.NewEvent{{Type: ipa.EventMessageDelivered, Data: ipa.MessageDeliveredData{MessageID: messageID}}}, nil
			}
		}
		return nil, invalid("No message with id %q was sent to this task.", messageID)
	})
	return err
}

// StreamMessages calls send with each undelivered message of the task,
// oldest first, then with each new one, once each, until ctx ends or send
// fails. It waits on the task's live feed, so a message sent through any
// instance arrives.
func (s *Service) StreamMessages(ctx context.Context, taskID string, send func(ipa.Message) error) error {
	sent := map[string]bool{}
	for {
		t, c, err := s.Load(ctx, taskID)
		if err != nil {
			return err
		}
		for _, m := range c.Undelivered() {
			if !sent[m.ID] {
				if err := send(m); err != nil {
					return err
				}
				sent[m.ID] = true
			}
		}
		if err := s.waitFor(ctx, taskID, t.Version, ipa.EventMessageSent); err != nil {
			return err
		}
	}
}

// waitFor waits until the task's stream has an event of one of types after
// version after (or the subscription has to be opened again).
func (s *Service) waitFor(ctx context.Context, taskID string, after int64, types ...string) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.feed.TaskEvents(cctx, taskID, &after)
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-ch:
			if !ok {
				return ctx.Err()
			}
			for _, t := range types {
				if e.Type == t {
					return nil
				}
			}
		}
	}
}

// waitUntil is waitFor with a deadline: at it, the wait ends too.
func (s *Service) waitUntil(ctx context.Context, taskID string, after int64, at *time.Time, types ...string) error {
	if at == nil {
		return s.waitFor(ctx, taskID, after, types...)
	}
	cctx, cancel := context.WithDeadline(ctx, *at)
	defer cancel()
	err := s.waitFor(cctx, taskID, after, types...)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == context.DeadlineExceeded {
		return nil
	}
	return err
}

// Ask records input_requested (once per key within the task) and waits
// until the request ends: answered, expired (the waiter expires it itself
// at its time, the sweep does when nobody waits) or cancelled by the task's
// close. A task closed before the request was made refuses it.
func (s *Service) Ask(ctx context.Context, taskID, actor string, req podapi.AskRequest) (podapi.AskResponse, error) {
	return s.AskIn(ctx, taskID, actor, nil, req)
}

// runWait bounds how long an ask waits for its run's start to be recorded.
const runWait = 30 * time.Second

// askingRun returns the id of the event that started the asking run, as
// cause finds it, once the stream has it: a runtime may ask before the
// server has recorded its pod_started. "" after runWait, or when the task
// closed meanwhile.
func (s *Service) askingRun(ctx context.Context, taskID string, cause func(context.Context) string) (string, error) {
	deadline := time.Now().Add(runWait)
	for {
		t, c, err := s.Load(ctx, taskID)
		if err != nil {
			return "", err
		}
		id := cause(ctx)
		if (id != "" && c.Run(id) != "") || t.Status.Closed() {
			return id, nil
		}
		wctx, cancel := context.WithDeadline(ctx, deadline)
		err = s.waitFor(wctx, taskID, t.Version, ipa.EventPodStarted, ipa.EventPodReattached, ipa.EventTaskCompleted, ipa.EventTaskCancelled)
		cancel()
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if err != nil {
			return id, nil // not recorded in time: asked as no run's
		}
	}
}

// AskIn is Ask from a pod run: cause finds the id of the event that
// started the run (pod_started or pod_reattached, "" while not recorded),
// recorded as the request's cause. An unkeyed ask (ipa.Unkeyed) of a run gets the request an ended
// run asked the same way and nobody answered it while that run lived
// (ipa.Conversation.Reusable, recorded as input_reasked), so a pod that
// restarts while asking still gets the answer given to what it asked.
func (s *Service) AskIn(ctx context.Context, taskID, actor string, cause func(context.Context) string, req podapi.AskRequest) (podapi.AskResponse, error) {
	kind := ipa.InputKind(req.Kind)
	if kind == "" {
		kind = ipa.InputQuestion
	}
	if !kind.Valid() {
		return podapi.AskResponse{}, invalid("kind must be QUESTION, APPROVAL or CHOICE, not %q.", req.Kind)
	}
	if err := text("prompt", req.Prompt, ipa.MaxPromptChars, true); err != nil {
		return podapi.AskResponse{}, err
	}
	if len(req.Key) > ipa.MaxRequestKeyLen {
		return podapi.AskResponse{}, invalid("key is %d bytes; the limit is %d.", len(req.Key), ipa.MaxRequestKeyLen)
	}
	if len(req.Options) > ipa.MaxInputOptions {
		return podapi.AskResponse{}, invalid("%d options; the limit is %d.", len(req.Options), ipa.MaxInputOptions)
	}
	for _, o := range req.Options {
		if err := text("option", o, ipa.MaxOptionChars, true); err != nil {
			return podapi.AskResponse{}, err
		}
		if err := ipa.CheckLine("option", o); err != nil {
			return podapi.AskResponse{}, err // an option is one line
		}
	}
	if kind == ipa.InputChoice && len(req.Options) < 2 {
		return podapi.AskResponse{}, invalid("A choice needs at least two options.")
	}
	if req.Timeout < 0 || req.Timeout > MaxTimeout {
		return podapi.AskResponse{}, invalid("timeout must be between 0 (none) and %s.", MaxTimeout)
	}
	run := ""
	if cause != nil {
		var err error
		if run, err = s.askingRun(ctx, taskID, cause); err != nil {
			return podapi.AskResponse{}, err
		}
	}
	id := ""
	_, err := s.decide(ctx, taskID, actor, nil, func(t *ipa.Task, c *ipa.Conversation) ([]ipa.NewEvent, error) {
		if r := c.RequestByKey(req.Key); r != nil {
			id = r.ID
			return nil, nil
		}
		if err := ipa.ClosedTaskError(t.Status); err != nil {
			return nil, err
		}
		opts := req.Options
		if opts == nil {
			opts = []string{}
		}
		if ipa.Unkeyed(req.Key) {
			if r := c.Reusable(kind, req.Prompt, opts, c.Run(run)); r != nil {
				id = r.ID
				return []ipa.NewEvent{{Type: ipa.EventInputReasked, Data: ipa.InputReaskedData{RequestID: r.ID, Key: req.Key},
					CausationID: run}}, nil
			}
		}
		id = newID()
		var exp *time.Time
		if req.Timeout > 0 {
			at := s.now().Add(req.Timeout).UTC()
			exp = &at
		}
		return []ipa.NewEvent{{Type: ipa.EventInputRequested, Data: ipa.InputRequestedData{
			RequestID: id, Kind: kind, Prompt: req.Prompt, Options: opts, ExpiresAt: exp, Key: req.Key}, CausationID: run}}, nil
	})
	if err != nil {
		return podapi.AskResponse{}, err
	}
	return s.Await(ctx, taskID, id)
}

// Await waits until request id of the task ends and returns how.
func (s *Service) Await(ctx context.Context, taskID, id string) (podapi.AskResponse, error) {
	for {
		t, c, err := s.Load(ctx, taskID)
		if err != nil {
			return podapi.AskResponse{}, err
		}
		r := c.Request(id)
		if r == nil {
			return podapi.AskResponse{}, requestNotFound(id)
		}
		if r.State != ipa.InputPending {
			out := podapi.AskResponse{RequestID: r.ID, State: string(r.State), Approved: r.Approved, Comment: r.Comment, AnsweredBy: r.AnsweredBy}
			if r.Answer != nil {
				out.Answer = *r.Answer
			}
			return out, nil
		}
		if r.ExpiresAt != nil && !s.now().Before(*r.ExpiresAt) {
			if _, err := s.Expire(ctx, taskID, id); err != nil {
				return podapi.AskResponse{}, err
			}
			continue
		}
		if err := s.waitUntil(ctx, taskID, t.Version, r.ExpiresAt,
			ipa.EventInputAnswered, ipa.EventInputExpired, ipa.EventTaskCompleted, ipa.EventTaskCancelled); err != nil {
			return podapi.AskResponse{}, err
		}
	}
}
