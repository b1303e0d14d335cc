package main

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

// TestLinModelRefusesViolations holds hand-made histories to the model: the
// anomalies the linearizability check exists to catch must be refused, and
// the freedoms the servers legitimately have must be allowed.
func TestLinModelRefusesViolations(t *testing.T) {
	const task = "t"
	const never = 1000
	type op struct {
		call, ret int64
		in        linInput
		out       linOutput
	}
	create := func(pods bool) op {
		return op{0, 1, linInput{Kind: linCreate, Task: task, Pods: pods, Title: "a"}, linOutput{Version: 1}}
	}
	read := func(call, ret, v int64, title, status string, pods bool) op {
		return op{call, ret, linInput{Kind: linRead, Task: task, Pods: pods},
			linOutput{Version: v, Title: title, Phase: "SPEC_CLARIFICATION", Status: status}}
	}
	update := func(call, ret, expect int64, title string, out linOutput) op {
		return op{call, ret, linInput{Kind: linUpdate, Task: task, Expect: expect, Title: title}, out}
	}
	ok := func(v int64) linOutput { return linOutput{Version: v} }
	for _, c := range []struct {
		name string
		ops  []op
		want bool
	}{
		{"sequential", []op{create(false), update(2, 3, 1, "b", ok(2)), read(4, 5, 2, "b", "INACTIVE", false)}, true},
		{"concurrent writes in either order", []op{create(false),
			update(2, 10, 0, "b", ok(3)), update(3, 9, 0, "c", ok(2)), read(11, 12, 3, "b", "INACTIVE", false)}, true},
		{"lost update: both succeed on version 1", []op{create(false),
			update(2, 3, 1, "b", ok(2)), update(4, 5, 1, "c", ok(3))}, false},
		{"stale read", []op{create(false), update(2, 3, 0, "b", ok(2)), read(4, 5, 1, "a", "INACTIVE", false)}, false},
		{"conflict at the expected version", []op{create(false),
			update(2, 3, 1, "b", linOutput{Reason: "VERSION_CONFLICT"})}, false},
		{"conflict after a concurrent write", []op{create(false),
			update(2, 10, 0, "b", ok(2)), update(3, 9, 1, "c", linOutput{Reason: "VERSION_CONFLICT"})}, true},
		{"version without an event", []op{create(false), update(2, 3, 0, "b", ok(1))}, false},
		{"unknown outcome seen applied", []op{create(false),
			update(2, never, 0, "b", linOutput{Unknown: true}), read(5, 6, 2, "b", "INACTIVE", false)}, true},
		{"unknown outcome not applied", []op{create(false),
			update(2, never, 0, "b", linOutput{Unknown: true}), read(5, 6, 1, "a", "INACTIVE", false)}, true},
		{"unknown outcome applied then undone", []op{create(false),
			update(2, never, 0, "b", linOutput{Unknown: true}), read(5, 6, 2, "b", "INACTIVE", false),
			read(7, 8, 1, "a", "INACTIVE", false)}, false},
		{"a task with pods moves by itself", []op{create(true), read(2, 3, 5, "a", "ACTIVE", true)}, true},
		{"but never back", []op{create(true), read(2, 3, 5, "a", "ACTIVE", true), read(4, 5, 3, "a", "ACTIVE", true)}, false},
		{"a task without pods is never active", []op{create(false), read(2, 3, 1, "a", "ACTIVE", false)}, false},
		{"refused as completed while open", []op{create(false),
			update(2, 3, 0, "b", linOutput{Reason: "ALREADY_COMPLETED"})}, false},
		{"a write lands after the close", []op{create(false),
			{2, 30, linInput{Kind: linComplete, Task: task, Expect: 1}, ok(3)},
			update(10, 20, 0, "b", ok(2)),
			{40, 50, linInput{Kind: linRead, Task: task}, linOutput{Version: 3, Title: "b", Phase: "COMPLETED", Status: "COMPLETED"}}}, false},
		{"an illegal transition applied", []op{create(false),
			{2, 3, linInput{Kind: linPhase, Task: task, Phase: "REVIEW"}, ok(2)}}, false},
		{"a legal transition refused", []op{create(false),
			{2, 3, linInput{Kind: linPhase, Task: task, Phase: "PLANNING"}, linOutput{Reason: "INVALID_TRANSITION"}}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var hist []porcupine.Operation
			for i, o := range c.ops {
				hist = append(hist, porcupine.Operation{ClientId: i, Input: o.in, Call: o.call, Output: o.out, Return: o.ret})
			}
			if got := porcupine.CheckOperations(linModel, hist); got != c.want {
				t.Fatalf("linearizable = %v, want %v", got, c.want)
			}
		})
	}
}
