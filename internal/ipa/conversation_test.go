package ipa

import (
	"encoding/json"
	"testing"
	"time"
)

func ev(v int64, typ, actor string, data any) Event {
	raw, _ := json.Marshal(data)
	return Event{TaskID: "t", Version: v, Type: typ, ActorID: actor, Data: raw, OccurredAt: time.Unix(v, 0).UTC()}
}

// The fold: messages in order, delivered once; a request's first ending
// counts (a late expiry after an answer changes nothing); a key finds its
// request; closing the task cancels what is pending, and only that.
func TestFoldConversation(t *testing.T) {
	yes, approve := "yes", true
	c, err := FoldConversation([]Event{
		ev(2, EventMessageSent, "ann", MessageSentData{MessageID: "m1", Text: "one"}),
		ev(3, EventMessageSent, "ann", MessageSentData{MessageID: "m2", Text: "two", Data: json.RawMessage(`{"k":1}`)}),
		ev(4, EventMessageDelivered, "runtime:x", MessageDeliveredData{MessageID: "m1"}),
		ev(5, EventMessageDelivered, "runtime:x", MessageDeliveredData{MessageID: "m1"}),
		ev(6, EventInputRequested, "runtime:x", InputRequestedData{RequestID: "r1", Kind: InputApproval, Prompt: "ok?", Key: "k1"}),
		ev(7, EventInputRequested, "runtime:x", InputRequestedData{RequestID: "r2", Kind: InputQuestion, Prompt: "name?"}),
		ev(8, EventInputRequested, "runtime:x", InputRequestedData{RequestID: "r3", Kind: InputQuestion, Prompt: "late?"}),
		ev(9, EventInputAnswered, "bob", InputAnsweredData{RequestID: "r1", Approved: &approve}),
		ev(10, EventInputExpired, "system", InputExpiredData{RequestID: "r1"}),
		ev(11, EventInputExpired, "system", InputExpiredData{RequestID: "r3"}),
		ev(12, EventInputAnswered, "bob", InputAnsweredData{RequestID: "r3", Answer: &yes}),
		ev(13, EventTaskCancelled, "ann", TaskCancelledData{Reason: "done"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Messages) != 2 || !c.Messages[0].Delivered || c.Messages[1].Delivered || c.Messages[0].DeliveredAt.Unix() != 4 || string(c.Messages[1].Data) != `{"k":1}` {
		t.Fatalf("messages %+v", c.Messages)
	}
	if u := c.Undelivered(); len(u) != 1 || u[0].ID != "m2" {
		t.Fatalf("undelivered %+v", u)
	}
	r1, r2, r3 := c.Request("r1"), c.Request("r2"), c.Request("r3")
	if r1.State != InputAnswered || r1.Approved == nil || !*r1.Approved || r1.AnsweredBy != "bob" || r1.RequestedBy != "runtime:x" {
		t.Fatalf("r1 %+v", r1)
	}
	if r2.State != InputCancelled {
		t.Fatalf("r2 %+v", r2)
	}
	if r3.State != InputExpired || r3.Answer != nil {
		t.Fatalf("r3 %+v", r3)
	}
	if c.RequestByKey("k1") != r1 || c.RequestByKey("") != nil || len(c.Pending()) != 0 {
		t.Fatal("keys or pending")
	}
}

func TestBudgetExceeded(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	b := &Budget{Tokens: n(100), CostMicros: n(50), WallSeconds: n(10)}
	for _, c := range []struct {
		u    Usage
		wall int64
		want string
	}{
		{Usage{InputTokens: 60, OutputTokens: 40}, 0, ""},
		{Usage{InputTokens: 60, OutputTokens: 41}, 0, "tokens"},
		{Usage{CostMicros: 51}, 0, "costMicros"},
		{Usage{}, 11, "wallSeconds"},
	} {
		if got := b.Exceeded(c.u, c.wall); got != c.want {
			t.Errorf("%+v wall %d: %q, want %q", c.u, c.wall, got, c.want)
		}
	}
	var none *Budget
	if none.Exceeded(Usage{InputTokens: 1 << 40}, 1<<40) != "" {
		t.Error("no budget, no limit")
	}
}
