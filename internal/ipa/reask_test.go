package ipa

import (
	"testing"
)

func runEv(v int64, id, typ, cause string, data any) Event {
	e := ev(v, typ, "runtime:exec", data)
	e.ID, e.CausationID = id, cause
	return e
}

// An unkeyed request of a run that ended unanswered is what the next run's
// identical ask gets; one a live run was answered is not; a reused request
// belongs to its new run (not reused twice by it); a keyed one, another
// prompt, kind or options, and a phase gate's request never are.
func TestReusable(t *testing.T) {
	yes := true
	base := []Event{
		runEv(1, "s1", EventPodStarted, "", PodStartedData{}),
		runEv(2, "q1", EventInputRequested, "s1", InputRequestedData{RequestID: "r1", Kind: InputApproval, Prompt: "Go?", Options: []string{}, Key: "sdk:a"}),
		runEv(3, "q2", EventInputRequested, "s1", InputRequestedData{RequestID: "k1", Kind: InputApproval, Prompt: "Go?", Key: "mine"}),
		runEv(4, "q3", EventInputRequested, "s1", InputRequestedData{RequestID: "r2", Kind: InputApproval, Prompt: "Go?", Key: "sdk:b"}),
	}
	fold := func(evs ...Event) Conversation {
		t.Helper()
		c, err := FoldConversation(append(append([]Event{}, base...), evs...))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	id := func(r *InputRequest) string {
		if r == nil {
			return ""
		}
		return r.ID
	}

	// The asking run is live: nothing to reuse, whoever asks.
	c := fold()
	if r := c.Reusable(InputApproval, "Go?", nil, c.Run("s1")); r != nil {
		t.Fatalf("live run's request reused: %+v", r)
	}
	if c.Requests[0].Run != "s1" {
		t.Fatalf("run %q", c.Requests[0].Run)
	}

	// Crashed and started again: the first identical unkeyed request, then
	// (once it is the new run's) the second, then none.
	restart := []Event{
		runEv(5, "c1", EventPodCrashed, "s1", PodCrashedData{}),
		runEv(6, "s2", EventPodStarted, "", PodStartedData{}),
	}
	c = fold(restart...)
	run := c.Run("s2")
	if run != "s2" || c.Run("s1") != "" {
		t.Fatalf("runs %q %q", run, c.Run("s1"))
	}
	if got := id(c.Reusable(InputApproval, "Go?", nil, run)); got != "r1" {
		t.Fatalf("reused %q, want r1", got)
	}
	for _, other := range []struct {
		kind InputKind
		p    string
		opts []string
	}{{InputQuestion, "Go?", nil}, {InputApproval, "Go!", nil}, {InputApproval, "Go?", []string{"a"}}} {
		if r := c.Reusable(other.kind, other.p, other.opts, run); r != nil {
			t.Fatalf("%+v reused %s", other, r.ID)
		}
	}
	c = fold(append(restart, runEv(7, "x1", EventInputReasked, "s2", InputReaskedData{RequestID: "r1", Key: "sdk:c"}))...)
	if r := c.RequestByKey("sdk:c"); id(r) != "r1" || r.Run != "s2" {
		t.Fatalf("reasked request %+v", r)
	}
	if got := id(c.Reusable(InputApproval, "Go?", nil, run)); got != "r2" {
		t.Fatalf("second ask reused %q, want r2", got)
	}
	c = fold(append(restart,
		runEv(7, "x1", EventInputReasked, "s2", InputReaskedData{RequestID: "r1", Key: "sdk:c"}),
		runEv(8, "x2", EventInputReasked, "s2", InputReaskedData{RequestID: "r2", Key: "sdk:d"}))...)
	if r := c.Reusable(InputApproval, "Go?", nil, run); r != nil {
		t.Fatalf("third ask reused %s", r.ID)
	}

	// Answered while the pod was down: reused (its answer reaches no run
	// otherwise). Answered while its run lived: never.
	c = fold(append(restart[:1], runEv(6, "a1", EventInputAnswered, "", InputAnsweredData{RequestID: "r1", Approved: &yes}),
		runEv(7, "s2", EventPodStarted, "", PodStartedData{}))...)
	if r := c.Reusable(InputApproval, "Go?", nil, c.Run("s2")); id(r) != "r1" || r.State != InputAnswered || !r.EndedUnheard {
		t.Fatalf("answered while down: %+v", r)
	}
	c = fold(runEv(5, "a1", EventInputAnswered, "", InputAnsweredData{RequestID: "r1", Approved: &yes}),
		runEv(6, "e2", EventInputExpired, "", InputExpiredData{RequestID: "r2"}),
		runEv(7, "st", EventPodStopped, "s1", PodStoppedData{}),
		runEv(8, "s2", EventPodStarted, "", PodStartedData{}))
	if r := c.Reusable(InputApproval, "Go?", nil, c.Run("s2")); r != nil {
		t.Fatalf("answer a live run had reused: %+v", r)
	}

	// Expired after its run ended: not reused, the new run's ask is a new
	// wait.
	c = fold(append(restart[:1], runEv(6, "e1", EventInputExpired, "", InputExpiredData{RequestID: "r1"}),
		runEv(7, "e2", EventInputExpired, "", InputExpiredData{RequestID: "r2"}),
		runEv(8, "s2", EventPodStarted, "", PodStartedData{}))...)
	if r := c.Reusable(InputApproval, "Go?", nil, c.Run("s2")); r != nil {
		t.Fatalf("expired request reused: %+v", r)
	}

	// Reused while answered (so the new run got it): heard; once that run
	// ends too, the next run asks anew.
	c = fold(append(restart[:1], runEv(6, "a1", EventInputAnswered, "", InputAnsweredData{RequestID: "r1", Approved: &yes}),
		runEv(7, "e2", EventInputExpired, "", InputExpiredData{RequestID: "r2"}),
		runEv(8, "s2", EventPodStarted, "", PodStartedData{}),
		runEv(9, "x1", EventInputReasked, "s2", InputReaskedData{RequestID: "r1", Key: "sdk:c"}),
		runEv(10, "x2", EventInputReasked, "s2", InputReaskedData{RequestID: "r2", Key: "sdk:d"}),
		runEv(11, "st", EventPodStopped, "s2", PodStoppedData{}),
		runEv(12, "s3", EventPodStarted, "", PodStartedData{}))...)
	if r := c.Reusable(InputApproval, "Go?", nil, c.Run("s3")); r != nil {
		t.Fatalf("heard answer reused: %+v", r)
	}

	// A server restart (pod_reattached) continues the run: its requests are
	// still a live run's, and a write naming the reattach is that run's.
	c = fold(runEv(5, "re", EventPodReattached, "", PodReattachedData{}))
	if c.Run("re") != "s1" || c.Reusable(InputApproval, "Go?", nil, c.Run("re")) != nil {
		t.Fatalf("reattached run %q", c.Run("re"))
	}

	// A write naming an ended run is no run's (it raced the run's end or
	// came before its run's pod_started was recorded): never reused.
	c = fold(append(restart, runEv(7, "q9", EventInputRequested, "s1", InputRequestedData{RequestID: "r9", Kind: InputQuestion, Prompt: "late"}),
		runEv(8, "c2", EventPodCrashed, "s2", PodCrashedData{}),
		runEv(9, "s3", EventPodStarted, "", PodStartedData{}))...)
	if r := c.Request("r9"); r.Run != "" || c.Reusable(InputQuestion, "late", nil, c.Run("s3")) != nil {
		t.Fatalf("late request %+v", r)
	}

	// A phase gate's request is never reused.
	c = fold(runEv(5, "g", EventInputRequested, "s1", InputRequestedData{RequestID: "g1", Kind: InputApproval, Prompt: "gate",
		Transition: &TransitionData{RequestID: "g1", From: PhasePlanning, To: PhaseDevelopment}}), restart[0], restart[1])
	if r := c.Reusable(InputApproval, "gate", nil, c.Run("s2")); r != nil {
		t.Fatalf("gate reused")
	}
}
