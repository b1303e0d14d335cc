package main

// The sequential specification the linearizability check holds histories
// to: each task is a versioned stream with optimistic concurrency
// (expectedVersion), one partition per task.
//
// A task "with pods" also gets events nobody in the history asked for
// (pod_lost and pod_started on a takeover, pod_crashed, restarts): its
// version may move by itself at any moment, so the model knows only a lower
// bound of it. Its title, labels, phase and closedness still move only by
// the history's own operations. A task without pods gets no such events:
// the model then knows its version exactly whenever an operation showed it.

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/anishathalye/porcupine"
)

type linKind string

const (
	linCreate   linKind = "create"
	linRead     linKind = "read"
	linUpdate   linKind = "updateTask"
	linPhase    linKind = "transitionPhase"
	linComplete linKind = "completeTask"
	linCancel   linKind = "cancelTask"
	linStart    linKind = "startPod"
	linStop     linKind = "stopPod"
)

// linInput is what an operation asked.
type linInput struct {
	Kind   linKind
	Task   string
	Pods   bool   // the task's version also moves by itself (see above)
	Expect int64  // expectedVersion; 0 when not sent (versions start at 1)
	Title  string // create, update ("" = unchanged)
	Label  string // update: labels become {"w": Label} ("" = unchanged)
	Phase  string // transitionPhase's target
}

// linOutput is what it answered.
type linOutput struct {
	// Unknown: no answer (timeout, connection ended while the server died,
	// a store or internal error): it may or may not have happened. Such an
	// operation's return is the end of the history.
	Unknown bool
	Reason  string // the error's reason when it definitely failed; "" on success
	Version int64  // the version it returned (read, create, and mutations returning the task)
	// A read's view.
	Title, Label, Phase, Status string
}

// linState is one task's state as far as the model can know it.
type linState struct {
	Created bool
	V       int64 // the version, or a lower bound of it when !Exact
	Exact   bool
	Title   string
	Label   string
	Phase   string
	Closed  string // "", "COMPLETED" or "CANCELLED"
}

var linPhases = []string{"SPEC_CLARIFICATION", "PLANNING", "DEVELOPMENT", "REVIEW"}

func linPhaseIdx(p string) int {
	for i, w := range linPhases {
		if w == p {
			return i
		}
	}
	return -1
}

// linValidTransition is the contract's rule: one step forward, or one back.
func linValidTransition(from, to string) bool {
	f, t := linPhaseIdx(from), linPhaseIdx(to)
	return f >= 0 && t >= 0 && (t == f+1 || t == f-1)
}

// versionFits reports whether the task may be at version v in state s.
func (s linState) versionFits(v int64) bool {
	if s.Exact {
		return v == s.V
	}
	return v >= s.V
}

// apply is a mutation that took effect; version is what it returned (0 when
// it returns no version or is unknown). It reports false when the state
// forbids the effect.
func (s linState) apply(in linInput, version int64) (linState, bool) {
	if !s.Created || s.Closed != "" {
		return s, false
	}
	if in.Expect != 0 && !s.versionFits(in.Expect) {
		return s, false
	}
	n := s
	if in.Expect != 0 {
		n.V = in.Expect // it was exactly that when the operation decided
	}
	switch in.Kind {
	case linUpdate:
		if in.Title != "" {
			n.Title = in.Title
		}
		if in.Label != "" {
			n.Label = in.Label
		}
	case linPhase:
		if !linValidTransition(s.Phase, in.Phase) {
			return s, false
		}
		n.Phase = in.Phase
	case linComplete:
		n.Closed, n.Phase = "COMPLETED", "COMPLETED"
	case linCancel:
		n.Closed, n.Phase = "CANCELLED", "CANCELLED"
	case linStart, linStop:
		// Pod events only: the version moves by an amount the model does
		// not know (nothing when startPod found a pod running).
		n.Exact = false
		return n, true
	default:
		return s, false
	}
	if version == 0 {
		// Unknown outcome: at least one event more, exactly how many the
		// model does not know (a close may stop a pod first).
		n.V, n.Exact = n.V+1, false
		return n, true
	}
	// It appended at least one event after the version it decided on.
	if version <= n.V {
		return s, false
	}
	n.V, n.Exact = version, !in.Pods
	return n, true
}

// linStep is the nondeterministic step: the states the task may be in after
// the operation, none when the answer is impossible.
func linStep(state, input, output any) []any {
	s, in, out := state.(linState), input.(linInput), output.(linOutput)
	if in.Kind == linCreate {
		if s.Created || out.Unknown || out.Reason != "" {
			return nil
		}
		return []any{linState{Created: true, V: out.Version, Exact: !in.Pods, Title: in.Title, Phase: "SPEC_CLARIFICATION"}}
	}
	if !s.Created {
		return nil
	}
	if in.Kind == linRead {
		if out.Title != s.Title || out.Label != s.Label || out.Phase != s.Phase || !s.versionFits(out.Version) {
			return nil
		}
		switch {
		case s.Closed != "" && out.Status != s.Closed:
			return nil
		case s.Closed == "" && out.Status != "INACTIVE" && (!in.Pods || out.Status != "ACTIVE"):
			return nil // a task without pods is never ACTIVE
		}
		n := s
		n.V, n.Exact = out.Version, !in.Pods
		return []any{n}
	}
	if out.Unknown {
		res := []any{s} // it did not happen…
		if n, ok := s.apply(in, 0); ok {
			res = append(res, n) // …or it did
		}
		return res
	}
	if out.Reason == "" {
		n, ok := s.apply(in, out.Version)
		if !ok {
			return nil
		}
		return []any{n}
	}
	// Definite refusals: each must be true of the state it was decided on.
	switch out.Reason {
	case "VERSION_CONFLICT":
		// Without expectedVersion the server retries conflicts itself and
		// may give up under contention: allowed, changes nothing.
		if in.Expect != 0 && s.Exact && s.V == in.Expect && s.Closed == "" {
			return nil // it saw the very version it was told to expect
		}
	case "ALREADY_COMPLETED", "ALREADY_CANCELLED":
		if s.Closed != strings.TrimPrefix(out.Reason, "ALREADY_") {
			return nil
		}
	case "INVALID_TRANSITION":
		if in.Kind != linPhase || s.Closed != "" || linValidTransition(s.Phase, in.Phase) {
			return nil
		}
	case "NOT_RUNNING":
		// The model does not follow pod states.
		if in.Kind != linStop {
			return nil
		}
	default:
		return nil
	}
	return []any{s}
}

// linModel partitions the history by task.
var linModel = (&porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byTask := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range history {
			id := op.Input.(linInput).Task
			if _, ok := byTask[id]; !ok {
				order = append(order, id)
			}
			byTask[id] = append(byTask[id], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, id := range order {
			out = append(out, byTask[id])
		}
		return out
	},
	Init: func() []any { return []any{linState{}} },
	Step: linStep,
	Hash: func(state any) uint64 {
		h := fnv.New64a()
		fmt.Fprintf(h, "%+v", state.(linState))
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		var b strings.Builder
		b.WriteString(string(in.Kind))
		if in.Expect != 0 {
			fmt.Fprintf(&b, " @%d", in.Expect)
		}
		if in.Title != "" {
			fmt.Fprintf(&b, " title=%s", in.Title)
		}
		if in.Label != "" {
			fmt.Fprintf(&b, " label=%s", in.Label)
		}
		if in.Phase != "" {
			fmt.Fprintf(&b, " to=%s", in.Phase)
		}
		b.WriteString(" → ")
		switch {
		case out.Unknown:
			b.WriteString("unknown")
		case out.Reason != "":
			b.WriteString(out.Reason)
		case in.Kind == linRead:
			fmt.Fprintf(&b, "v%d %s %s %s %s", out.Version, out.Title, out.Label, out.Phase, out.Status)
		case out.Version != 0:
			fmt.Fprintf(&b, "ok v%d", out.Version)
		default:
			b.WriteString("ok")
		}
		return b.String()
	},
	DescribeState: func(state any) string {
		s := state.(linState)
		if !s.Created {
			return "not created"
		}
		rel := "="
		if !s.Exact {
			rel = "≥"
		}
		closed := s.Closed
		if closed == "" {
			closed = "open"
		}
		return fmt.Sprintf("v%s%d %s %s %s %s", rel, s.V, s.Title, s.Label, s.Phase, closed)
	},
}).ToModel()
