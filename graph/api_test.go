package graph_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/ipa"
)

func TestCreateTask(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		c := b.anon()

		t.Run("Defaults", func(t *testing.T) {
			before := time.Now().UTC()
			tk := c.CreateTitled(t, "  \tWrite the docs \n ")
			after := time.Now().UTC()
			require.Equal(t, "Write the docs", tk.Title)
			require.Nil(t, tk.Description)
			require.Equal(t, "INACTIVE", tk.Status)
			require.Equal(t, "SPEC_CLARIFICATION", tk.Phase)
			require.Equal(t, "demo", tk.Runtime)
			require.Equal(t, 1, tk.Version)
			require.Equal(t, "STOPPED", tk.Pod.State)
			require.Equal(t, "local", tk.CreatedBy)
			require.JSONEq(t, `{}`, string(tk.RuntimeConfig))
			require.JSONEq(t, `{}`, string(tk.Metadata))
			def := ipa.DefaultRestartPolicy()
			require.Equal(t, def.AutoRestart, tk.RestartPolicy.AutoRestart)
			require.Equal(t, def.MaxAttempts, tk.RestartPolicy.MaxAttempts)
			require.Equal(t, def.WindowSeconds, tk.RestartPolicy.WindowSeconds)
			require.Equal(t, def.InitialBackoffMs, tk.RestartPolicy.InitialBackoffMs)
			require.Equal(t, def.MaxBackoffMs, tk.RestartPolicy.MaxBackoffMs)
			require.Equal(t, tk.CreatedAt, tk.UpdatedAt)
			require.Equal(t, time.UTC, tk.CreatedAt.Location())
			require.False(t, tk.CreatedAt.Before(before.Add(-time.Second)) || tk.CreatedAt.After(after.Add(time.Second)),
				"createdAt %v not within the request", tk.CreatedAt)
			_, err := uuid.Parse(tk.ID)
			require.NoError(t, err)

			// What was returned is what is stored.
			require.Equal(t, tk, c.Get(t, tk.ID))
			evs := c.Events(t, tk.ID)
			require.Len(t, evs, 1)
			require.Equal(t, "task_created", evs[0].Type)
		})

		t.Run("AllFields", func(t *testing.T) {
			tk := c.Create(t, map[string]any{
				"title":         "Full",
				"description":   "Some words.",
				"runtime":       "exec",
				"runtimeConfig": map[string]any{"command": []string{"sh", "-c", "echo hi"}},
				"metadata":      map[string]any{"owner": "ops", "n": 3},
				"restartPolicy": map[string]any{"autoRestart": true, "maxAttempts": 5, "windowSeconds": 30, "initialBackoffMs": 10, "maxBackoffMs": 100},
			})
			require.Equal(t, "exec", tk.Runtime)
			require.NotNil(t, tk.Description)
			require.Equal(t, "Some words.", *tk.Description)
			require.JSONEq(t, `{"command":["sh","-c","echo hi"]}`, string(tk.RuntimeConfig))
			require.JSONEq(t, `{"owner":"ops","n":3}`, string(tk.Metadata))
			require.True(t, tk.RestartPolicy.AutoRestart)
			require.Equal(t, 5, tk.RestartPolicy.MaxAttempts)
			require.Equal(t, 30, tk.RestartPolicy.WindowSeconds)
			require.Equal(t, 10, tk.RestartPolicy.InitialBackoffMs)
			require.Equal(t, 100, tk.RestartPolicy.MaxBackoffMs)
			require.Equal(t, tk, c.Get(t, tk.ID))
		})

		t.Run("TitleLengthInCharacters", func(t *testing.T) {
			for _, r := range []string{"é", "日", "😀"} {
				title := strings.Repeat(r, ipa.MaxTitleChars)
				tk := c.CreateTitled(t, "  "+title+"  ")
				require.Equal(t, title, tk.Title)
				require.Equal(t, ipa.MaxTitleChars, utf8.RuneCountInString(tk.Title))
				require.Greater(t, len(tk.Title), ipa.MaxTitleChars, "the title is longer in bytes than in characters")

				n, head := c.Count(t, nil), b.HeadPosition(t)
				e := c.Fail(t, apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": title + r}})
				apptest.RequireError(t, e, ipa.EINVALID, ipa.ReasonInvalidTitle)
				require.Equal(t, n, c.Count(t, nil))
				require.Equal(t, head, b.HeadPosition(t))
			}
		})

		t.Run("NULBytes", func(t *testing.T) {
			// PostgreSQL's text and jsonb cannot hold NUL: both backends
			// refuse it as the client's error, never an internal one.
			for name, tc := range map[string]struct {
				input  map[string]any
				reason string
			}{
				"Title":          {map[string]any{"title": "nul\x00inside"}, ipa.ReasonInvalidText},
				"Description":    {map[string]any{"title": "t", "description": "nul\x00inside"}, ipa.ReasonInvalidText},
				"Metadata":       {map[string]any{"title": "t", "metadata": map[string]any{"k": "nul\x00inside"}}, ipa.ReasonInvalidArgument},
				"MetadataKey":    {map[string]any{"title": "t", "metadata": map[string]any{"nul\x00key": 1}}, ipa.ReasonInvalidArgument},
				"IdempotencyKey": {map[string]any{"title": "t", "idempotencyKey": "k\x00"}, ipa.ReasonInvalidText},
			} {
				n, head := c.Count(t, nil), b.HeadPosition(t)
				e := c.Fail(t, apptest.CreateTaskMutation, map[string]any{"input": tc.input})
				apptest.RequireError(t, e, ipa.EINVALID, tc.reason)
				require.Equal(t, n, c.Count(t, nil), name)
				require.Equal(t, head, b.HeadPosition(t), name)
			}
			// An escaped backslash followed by "u0000" is text, not NUL.
			tk := c.Create(t, map[string]any{"title": "t", "metadata": map[string]any{"path": `C:\u0000`}})
			require.JSONEq(t, `{"path": "C:\\u0000"}`, string(tk.Metadata))
		})

		big := strings.Repeat("x", ipa.MaxMetadataBytes+1)
		refusals := []struct {
			name   string
			input  map[string]any
			reason string
		}{
			{"EmptyTitle", map[string]any{"title": ""}, ipa.ReasonInvalidTitle},
			{"BlankTitle", map[string]any{"title": " \t\n\u00a0 "}, ipa.ReasonInvalidTitle},
			{"TitleTooLong", map[string]any{"title": strings.Repeat("a", 256)}, ipa.ReasonInvalidTitle},
			{"UnknownRuntime", map[string]any{"title": "t", "runtime": "no-such-runtime"}, ipa.ReasonInvalidArgument},
			{"RuntimeConfigArray", map[string]any{"title": "t", "runtimeConfig": []int{1, 2}}, ipa.ReasonInvalidArgument},
			{"RuntimeConfigString", map[string]any{"title": "t", "runtimeConfig": "stepMs=100"}, ipa.ReasonInvalidArgument},
			{"DemoStepMsTooSmall", map[string]any{"title": "t", "runtimeConfig": map[string]any{"stepMs": 1}}, ipa.ReasonInvalidArgument},
			{"DemoStepMsTooLarge", map[string]any{"title": "t", "runtimeConfig": map[string]any{"stepMs": 3_600_001}}, ipa.ReasonInvalidArgument},
			{"DemoUnknownField", map[string]any{"title": "t", "runtimeConfig": map[string]any{"speed": 1}}, ipa.ReasonInvalidArgument},
			{"ExecWithoutCommand", map[string]any{"title": "t", "runtime": "exec"}, ipa.ReasonInvalidArgument},
			{"MetadataTooLarge", map[string]any{"title": "t", "metadata": map[string]any{"blob": big}}, ipa.ReasonInvalidArgument},
			{"MetadataNotObject", map[string]any{"title": "t", "metadata": 42}, ipa.ReasonInvalidArgument},
			{"RuntimeConfigTooLarge", map[string]any{"title": "t", "runtime": "exec", "runtimeConfig": map[string]any{"command": []string{"echo", big}}}, ipa.ReasonInvalidArgument},
			{"DescriptionTooLarge", map[string]any{"title": "t", "description": big}, ipa.ReasonInvalidArgument},
			{"MaxAttemptsNegative", map[string]any{"title": "t", "restartPolicy": map[string]any{"maxAttempts": -1}}, ipa.ReasonInvalidArgument},
			{"MaxAttemptsTooLarge", map[string]any{"title": "t", "restartPolicy": map[string]any{"maxAttempts": 101}}, ipa.ReasonInvalidArgument},
			{"WindowZero", map[string]any{"title": "t", "restartPolicy": map[string]any{"windowSeconds": 0}}, ipa.ReasonInvalidArgument},
			{"BackoffInverted", map[string]any{"title": "t", "restartPolicy": map[string]any{"initialBackoffMs": 500, "maxBackoffMs": 100}}, ipa.ReasonInvalidArgument},
			{"EmptyIdempotencyKey", map[string]any{"title": "t", "idempotencyKey": ""}, ipa.ReasonInvalidArgument},
		}
		for _, tc := range refusals {
			t.Run(tc.name, func(t *testing.T) {
				n, head := c.Count(t, nil), b.HeadPosition(t)
				r := c.GQL(t, apptest.CreateTaskMutation, map[string]any{"input": tc.input})
				require.Lenf(t, r.Errors, 1, "%s", r.Raw)
				apptest.RequireError(t, r.Errors[0], ipa.EINVALID, tc.reason)
				require.NotContains(t, r.Errors[0].Message, ipa.EINVALID, "the message is for a person, not a code dump")
				require.JSONEq(t, `null`, string(r.Data), "a refused create returns no task")
				require.Equal(t, n, c.Count(t, nil), "a refused create wrote a task")
				require.Equal(t, head, b.HeadPosition(t), "a refused create wrote an event")
			})
		}
	})
}

func TestIdempotency(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		anon := b.anon()
		n0 := anon.Count(t, nil)

		// 20 concurrent creates with one key from one actor: one task.
		createConcurrently := func(c *client, title string) []string {
			ids := make([]string, 20)
			var wg sync.WaitGroup
			for i := range ids {
				wg.Go(func() {
					tk := c.Create(t, map[string]any{"title": fmt.Sprintf("%s %d", title, i), "idempotencyKey": "deploy-42"})
					ids[i] = tk.ID
				})
			}
			wg.Wait()
			return ids
		}
		ids := createConcurrently(anon, "local")
		for _, id := range ids {
			require.Equal(t, ids[0], id)
		}
		require.Equal(t, n0+1, anon.Count(t, nil))
		first := anon.Get(t, ids[0])
		require.Equal(t, 1, first.Version)
		require.Len(t, anon.Events(t, first.ID), 1)

		// A repeat returns the first task and writes nothing.
		head := b.HeadPosition(t)
		again := anon.Create(t, map[string]any{"title": "something else", "idempotencyKey": "deploy-42"})
		require.Equal(t, first, again)
		require.Equal(t, head, b.HeadPosition(t))

		// The same key from another actor is another task.
		_, secret := b.Mint(t, "alice", ipa.RoleOperator)
		alice := b.as(secret)
		aliceIDs := createConcurrently(alice, "alice")
		for _, id := range aliceIDs {
			require.Equal(t, aliceIDs[0], id)
		}
		require.NotEqual(t, first.ID, aliceIDs[0])
		require.Equal(t, n0+2, alice.Count(t, nil))
		at := alice.Get(t, aliceIDs[0])
		require.Equal(t, "alice", at.CreatedBy)

		// A different key from the same actor is a new task.
		other := alice.Create(t, map[string]any{"title": "other", "idempotencyKey": "deploy-43"})
		require.NotEqual(t, at.ID, other.ID)
		require.Equal(t, n0+3, alice.Count(t, nil))
	})
}

// taskMutations are every mutation that names a task, with arguments that
// would be valid for an open task.
var taskMutations = []struct {
	name  string
	query string
}{
	{"startPod", `mutation($id: ID!, $v: Int) { startPod(taskId: $id, expectedVersion: $v) { started task { id } } }`},
	{"stopPod", `mutation($id: ID!, $v: Int) { stopPod(taskId: $id, reason: "enough", expectedVersion: $v) { task { id } } }`},
	{"restartPod", `mutation($id: ID!, $v: Int) { restartPod(taskId: $id, expectedVersion: $v) { task { id } } }`},
	{"transitionPhase", `mutation($id: ID!, $v: Int) { transitionPhase(taskId: $id, to: PLANNING, expectedVersion: $v) { task { id } } }`},
	{"completeTask", `mutation($id: ID!, $v: Int) { completeTask(taskId: $id, expectedVersion: $v) { task { id } } }`},
	{"cancelTask", `mutation($id: ID!, $v: Int) { cancelTask(taskId: $id, reason: "not needed", expectedVersion: $v) { task { id } } }`},
}

const (
	completeMutation = `mutation($id: ID!) { completeTask(taskId: $id) { task { ` + apptest.TaskFields + ` } } }`
	cancelMutation   = `mutation($id: ID!, $reason: String!) { cancelTask(taskId: $id, reason: $reason) { task { ` + apptest.TaskFields + ` } } }`
)

func (c *client) transition(t *testing.T, id, to string) task {
	t.Helper()
	var out struct {
		TransitionPhase struct{ Task task } `json:"transitionPhase"`
	}
	c.Must(t, apptest.TransitionMutation, map[string]any{"id": id, "to": to}, &out)
	return out.TransitionPhase.Task
}

func (c *client) complete(t *testing.T, id string) task {
	t.Helper()
	var out struct {
		CompleteTask struct{ Task task } `json:"completeTask"`
	}
	c.Must(t, completeMutation, map[string]any{"id": id}, &out)
	return out.CompleteTask.Task
}

func (c *client) cancel(t *testing.T, id, reason string) task {
	t.Helper()
	var out struct {
		CancelTask struct{ Task task } `json:"cancelTask"`
	}
	c.Must(t, cancelMutation, map[string]any{"id": id, "reason": reason}, &out)
	return out.CancelTask.Task
}

func TestErrorCodes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		c := b.anon()
		open := c.CreateTitled(t, "open")
		completed := c.complete(t, c.CreateTitled(t, "to complete").ID)
		require.Equal(t, "COMPLETED", completed.Status)
		cancelled := c.cancel(t, c.CreateTitled(t, "to cancel").ID, "no longer needed")
		require.Equal(t, "CANCELLED", cancelled.Status)

		t.Run("MissingReason", func(t *testing.T) {
			for _, reason := range []string{"", "   ", "\t\n"} {
				head := b.HeadPosition(t)
				e := c.Fail(t, cancelMutation, map[string]any{"id": open.ID, "reason": reason})
				apptest.RequireError(t, e, ipa.EINVALID, ipa.ReasonMissingReason)
				require.Equal(t, head, b.HeadPosition(t))
				require.Equal(t, "INACTIVE", c.Get(t, open.ID).Status)
			}
		})

		t.Run("TaskNotFound", func(t *testing.T) {
			for _, m := range taskMutations {
				for _, id := range []string{uuid.NewString(), "not-a-task-id", "", "00000000-0000-0000-0000-000000000000"} {
					r := c.GQL(t, m.query, map[string]any{"id": id})
					require.Lenf(t, r.Errors, 1, "%s %q: %s", m.name, id, r.Raw)
					apptest.RequireError(t, r.Errors[0], ipa.ENOTFOUND, ipa.ReasonTaskNotFound)
					require.JSONEq(t, `null`, string(r.Data))
				}
			}
		})

		t.Run("TaskQueryNullForUnknown", func(t *testing.T) {
			for _, id := range []string{uuid.NewString(), "not-a-task-id", "", "'; DROP TABLE tasks; --"} {
				r := c.GQL(t, `query($id: ID!) { task(id: $id) { id } node(id: $id) { id } }`, map[string]any{"id": id})
				require.Emptyf(t, r.Errors, "%s", r.Raw)
				require.JSONEq(t, `{"task": null, "node": null}`, string(r.Data))
			}
			var out struct{ Node struct{ ID, Title string } }
			c.Must(t, `query($id: ID!) { node(id: $id) { id ... on Task { title } } }`, map[string]any{"id": open.ID}, &out)
			require.Equal(t, open.ID, out.Node.ID)
			require.Equal(t, "open", out.Node.Title)
		})

		t.Run("ClosedTask", func(t *testing.T) {
			for _, closed := range []struct {
				task   task
				reason string
			}{{completed, ipa.ReasonAlreadyCompleted}, {cancelled, ipa.ReasonAlreadyCancelled}} {
				head := b.HeadPosition(t)
				for _, m := range taskMutations {
					e := c.Fail(t, m.query, map[string]any{"id": closed.task.ID})
					apptest.RequireError(t, e, ipa.ECONFLICT, closed.reason)
				}
				for _, to := range []string{"SPEC_CLARIFICATION", "PLANNING", "DEVELOPMENT", "REVIEW", "COMPLETED", "CANCELLED"} {
					e := c.Fail(t, apptest.TransitionMutation, map[string]any{"id": closed.task.ID, "to": to})
					apptest.RequireError(t, e, ipa.ECONFLICT, closed.reason)
				}
				require.Equal(t, head, b.HeadPosition(t), "a refused change to a closed task wrote an event")
				require.Equal(t, closed.task, c.Get(t, closed.task.ID))
			}
		})

		t.Run("NotRunning", func(t *testing.T) {
			e := c.Fail(t, `mutation($id: ID!) { stopPod(taskId: $id) { task { id } } }`, map[string]any{"id": open.ID})
			apptest.RequireError(t, e, ipa.ECONFLICT, ipa.ReasonNotRunning)
		})

		t.Run("InvalidTransition", func(t *testing.T) {
			head := b.HeadPosition(t)
			for _, to := range []string{"DEVELOPMENT", "REVIEW", "COMPLETED", "CANCELLED", "SPEC_CLARIFICATION"} {
				e := c.Fail(t, apptest.TransitionMutation, map[string]any{"id": open.ID, "to": to})
				apptest.RequireError(t, e, ipa.ECONFLICT, ipa.ReasonInvalidTransition)
			}
			require.Equal(t, head, b.HeadPosition(t))
			require.Equal(t, open, c.Get(t, open.ID))
		})

		t.Run("VersionConflict", func(t *testing.T) {
			tk := c.CreateTitled(t, "versioned")
			var out struct {
				TransitionPhase struct{ Task task } `json:"transitionPhase"`
			}
			c.Must(t, apptest.TransitionMutation, map[string]any{"id": tk.ID, "to": "PLANNING", "v": 1}, &out)
			require.Equal(t, 2, out.TransitionPhase.Task.Version)
			cur := c.Get(t, tk.ID)
			head := b.HeadPosition(t)

			e := c.Fail(t, apptest.TransitionMutation, map[string]any{"id": tk.ID, "to": "DEVELOPMENT", "v": 1})
			apptest.RequireError(t, e, ipa.ECONFLICT, ipa.ReasonVersionConflict)
			require.EqualValues(t, 2, e.Extensions["currentVersion"])
			for _, m := range taskMutations {
				if m.name == "stopPod" {
					continue // NOT_RUNNING is checked first by some implementations; covered above
				}
				e := c.Fail(t, m.query, map[string]any{"id": tk.ID, "v": 1})
				apptest.RequireError(t, e, ipa.ECONFLICT, ipa.ReasonVersionConflict)
				require.EqualValuesf(t, 2, e.Extensions["currentVersion"], "%s", m.name)
			}
			require.Equal(t, head, b.HeadPosition(t), "a version conflict wrote an event")
			require.Equal(t, cur, c.Get(t, tk.ID))
			require.Len(t, c.Events(t, tk.ID), 2)

			// The current version works.
			c.Must(t, apptest.TransitionMutation, map[string]any{"id": tk.ID, "to": "DEVELOPMENT", "v": 2}, &out)
			require.Equal(t, 3, out.TransitionPhase.Task.Version)
			require.Equal(t, "DEVELOPMENT", out.TransitionPhase.Task.Phase)
		})

		t.Run("InvalidArgument", func(t *testing.T) {
			var page struct {
				Tasks struct {
					Edges    []struct{ Cursor string }
					PageInfo struct{ EndCursor string }
				}
			}
			c.Must(t, `{ tasks(first: 1, orderBy: {field: TITLE, direction: ASC}) { edges { cursor } pageInfo { endCursor } } }`, nil, &page)
			cur := page.Tasks.PageInfo.EndCursor
			require.NotEmpty(t, cur)
			tampered := []byte(cur)
			i := len(tampered) / 2
			if tampered[i] == 'A' {
				tampered[i] = 'B'
			} else {
				tampered[i] = 'A'
			}
			var evPage struct {
				Task struct {
					Events struct{ PageInfo struct{ EndCursor string } }
				}
			}
			c.Must(t, `query($id: ID!) { task(id: $id) { events(first: 1) { pageInfo { endCursor } } } }`, map[string]any{"id": completed.ID}, &evPage)
			evCursor := evPage.Task.Events.PageInfo.EndCursor
			require.NotEmpty(t, evCursor)

			cases := []struct {
				name  string
				query string
				vars  map[string]any
			}{
				{"FirstZero", `{ tasks(first: 0) { totalCount } }`, nil},
				{"FirstNegative", `{ tasks(first: -5) { totalCount } }`, nil},
				{"FirstTooLarge", `{ tasks(first: 1001) { totalCount } }`, nil},
				{"GarbageCursor", `{ tasks(after: "not a cursor") { totalCount } }`, nil},
				{"EmptyCursor", `{ tasks(after: "") { totalCount } }`, nil},
				{"TamperedCursor", `query($a: String) { tasks(first: 1, orderBy: {field: TITLE, direction: ASC}, after: $a) { totalCount } }`, map[string]any{"a": string(tampered)}},
				{"CursorOfAnotherOrder", `query($a: String) { tasks(first: 1, orderBy: {field: TITLE, direction: DESC}, after: $a) { totalCount } }`, map[string]any{"a": cur}},
				{"CursorOfAnotherFilter", `query($a: String) { tasks(first: 1, orderBy: {field: TITLE, direction: ASC}, filter: {runtime: "demo"}, after: $a) { totalCount } }`, map[string]any{"a": cur}},
				{"EventCursorForTasks", `query($a: String) { tasks(first: 1, after: $a) { totalCount } }`, map[string]any{"a": evCursor}},
				{"TaskCursorForEvents", `query($id: ID!, $a: String) { task(id: $id) { events(after: $a) { totalCount } } }`, map[string]any{"id": completed.ID, "a": cur}},
				{"EventCursorOfAnotherTask", `query($id: ID!, $a: String) { task(id: $id) { events(after: $a) { totalCount } } }`, map[string]any{"id": cancelled.ID, "a": evCursor}},
				{"EventsFirstZero", `query($id: ID!) { task(id: $id) { events(first: 0) { totalCount } } }`, map[string]any{"id": open.ID}},
				{"EventsFirstTooLarge", `query($id: ID!) { task(id: $id) { events(first: 1001) { totalCount } } }`, map[string]any{"id": open.ID}},
				{"CrashesLastZero", `query($id: ID!) { task(id: $id) { pod { crashes(last: 0) { at } } } }`, map[string]any{"id": open.ID}},
				{"BadTime", `{ taskCount(filter: {createdAfter: "yesterday"}) }`, nil},
				{"TitleContainsNUL", `query($s: String) { tasks(filter: {titleContains: $s}) { totalCount } }`, map[string]any{"s": "a\x00"}},
				{"CreatedByNUL", `query($s: String) { taskCount(filter: {createdBy: $s}) }`, map[string]any{"s": "\x00"}},
				{"EventTypeNUL", `query($id: ID!) { task(id: $id) { events(types: ["\u0000"]) { totalCount } } }`, map[string]any{"id": open.ID}},
				{"StopReasonTooLong", `mutation($id: ID!, $r: String) { stopPod(taskId: $id, reason: $r) { task { id } } }`, map[string]any{"id": open.ID, "r": strings.Repeat("r", ipa.MaxReasonChars+1)}},
				{"TitleContainsTooLong", `query($s: String) { taskCount(filter: {titleContains: $s}) }`, map[string]any{"s": strings.Repeat("x", 4*ipa.MaxTitleChars+1)}},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					e := c.Fail(t, tc.query, tc.vars)
					apptest.RequireError(t, e, ipa.EINVALID, ipa.ReasonInvalidArgument)
				})
			}
		})

		t.Run("ParseFailed", func(t *testing.T) {
			for _, q := range []string{`{ task(`, `mutation { createTask(input: {title: "x"} { task { id } } }`, `}{`} {
				// GraphQL over HTTP: a request error is 200 for
				// application/json (the default), 400 for
				// application/graphql-response+json, typed like the
				// request asked, and never has a data entry.
				for accept, want := range map[string]int{"": http.StatusOK, "application/json": http.StatusOK, "application/graphql-response+json": http.StatusBadRequest} {
					r := c.Do(t, request{Query: q, Headers: map[string]string{"Accept": accept}})
					require.NotEmptyf(t, r.Errors, "%s", r.Raw)
					require.Equal(t, "GRAPHQL_PARSE_FAILED", r.Errors[0].Code())
					require.Equalf(t, want, r.Status, "Accept %q: %s", accept, r.Raw)
					wantType := "application/json"
					if accept == "application/graphql-response+json" {
						wantType = accept
					}
					require.Equal(t, wantType, r.Header.Get("Content-Type"))
					require.NotContains(t, string(r.Raw), `"data"`)
				}
			}
		})

		t.Run("ValidationFailed", func(t *testing.T) {
			n := c.Count(t, nil)
			for _, q := range []string{
				`{ noSuchField }`,
				`{ task(id: "x") { noSuchField } }`,
				`{ tasks(first: "seven") { totalCount } }`,
				`mutation { createTask(input: {}) { task { id } } }`,
				`mutation { createTask(input: {title: "x", runtime: 5}) { task { id } } }`,
				`mutation { transitionPhase(taskId: "x", to: FINISHED) { task { id } } }`,
				`{ tasks { edges { node { id } } } }` + "\n" + `{ viewer { id } }`,
			} {
				r := c.GQL(t, q, nil)
				require.NotEmptyf(t, r.Errors, "%s", r.Raw)
				require.Equalf(t, "GRAPHQL_VALIDATION_FAILED", r.Errors[0].Code(), "%s: %s", q, r.Raw)
			}
			// A variable of the wrong type is refused before running too.
			r := c.GQL(t, apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"description": "no title"}})
			require.NotEmpty(t, r.Errors)
			require.Equal(t, "GRAPHQL_VALIDATION_FAILED", r.Errors[0].Code())
			require.Equal(t, n, c.Count(t, nil), "a refused document created a task")
		})

		t.Run("PodsUnavailable", func(t *testing.T) {
			// This harness's server cannot launch plugins: starting a pod
			// is a clean UNAVAILABLE, never an internal error, and each
			// failed start is recorded as the pod's crash (start_failed).
			head := b.HeadPosition(t)
			e := c.Fail(t, `mutation($id: ID!) { startPod(taskId: $id) { started } }`, map[string]any{"id": open.ID})
			apptest.RequireError(t, e, ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed)
			e = c.Fail(t, `mutation($id: ID!) { restartPod(taskId: $id) { task { id } } }`, map[string]any{"id": open.ID})
			apptest.RequireError(t, e, ipa.EUNAVAILABLE, ipa.ReasonRuntimeFailed)
			require.Equal(t, head+2, b.HeadPosition(t))
			var out struct {
				Task struct {
					Pod struct {
						State   string
						Crashes []struct{ Reason, Message string }
					}
				}
			}
			c.Must(t, `query($id: ID!) { task(id: $id) { pod { state crashes { reason message } } } }`, map[string]any{"id": open.ID}, &out)
			require.Equal(t, "CRASHED", out.Task.Pod.State)
			require.Len(t, out.Task.Pod.Crashes, 2)
			for _, cr := range out.Task.Pod.Crashes {
				require.Equal(t, "start_failed", cr.Reason)
				require.NotEmpty(t, cr.Message)
			}
		})

		t.Run("EveryErrorHasCorrelationID", func(t *testing.T) {
			r := c.Do(t, request{Query: `{ task(`, Headers: map[string]string{"X-Request-Id": "trace-parse-1"}})
			require.NotEmpty(t, r.Errors)
			require.Equal(t, "trace-parse-1", r.Errors[0].Extensions["correlationId"])
			require.Equal(t, "trace-parse-1", r.Header.Get("X-Request-Id"))
		})
	})
}

var workPhases = []string{"SPEC_CLARIFICATION", "PLANNING", "DEVELOPMENT", "REVIEW"}

func TestPhaseRules(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		c := b.anon()

		t.Run("ForwardAndBack", func(t *testing.T) {
			tk := c.CreateTitled(t, "walk")
			version := 1
			for i := 1; i < len(workPhases); i++ {
				// Skipping a phase is refused from every phase.
				if i+1 < len(workPhases) {
					e := c.Fail(t, apptest.TransitionMutation, map[string]any{"id": tk.ID, "to": workPhases[i+1]})
					apptest.RequireError(t, e, ipa.ECONFLICT, ipa.ReasonInvalidTransition)
				}
				got := c.transition(t, tk.ID, workPhases[i])
				version++
				require.Equal(t, workPhases[i], got.Phase)
				require.Equal(t, version, got.Version)
				require.Equal(t, "INACTIVE", got.Status)
				require.False(t, got.UpdatedAt.Before(got.CreatedAt))
			}
			// REVIEW: nothing further forward; COMPLETED only via completeTask.
			e := c.Fail(t, apptest.TransitionMutation, map[string]any{"id": tk.ID, "to": "COMPLETED"})
			apptest.RequireError(t, e, ipa.ECONFLICT, ipa.ReasonInvalidTransition)
			// Back one step at a time, never two.
			for i := len(workPhases) - 2; i >= 0; i-- {
				if i-1 >= 0 {
					e := c.Fail(t, apptest.TransitionMutation, map[string]any{"id": tk.ID, "to": workPhases[i-1]})
					apptest.RequireError(t, e, ipa.ECONFLICT, ipa.ReasonInvalidTransition)
				}
				got := c.transition(t, tk.ID, workPhases[i])
				version++
				require.Equal(t, workPhases[i], got.Phase)
				require.Equal(t, version, got.Version)
			}
			evs := c.Events(t, tk.ID)
			require.Len(t, evs, version)
			var data struct{ From, To string }
			require.NoError(t, json.Unmarshal(evs[1].Data, &data))
			require.Equal(t, "SPEC_CLARIFICATION", data.From)
			require.Equal(t, "PLANNING", data.To)
		})

		t.Run("CloseFromEveryPhase", func(t *testing.T) {
			for i, phase := range workPhases {
				for _, closeWith := range []string{"complete", "cancel"} {
					tk := c.CreateTitled(t, closeWith+" from "+phase)
					for _, p := range workPhases[1 : i+1] {
						c.transition(t, tk.ID, p)
					}
					var closed task
					wantStatus, wantReason := "COMPLETED", ipa.ReasonAlreadyCompleted
					if closeWith == "complete" {
						closed = c.complete(t, tk.ID)
					} else {
						closed = c.cancel(t, tk.ID, "  changed plans  ")
						wantStatus, wantReason = "CANCELLED", ipa.ReasonAlreadyCancelled
					}
					require.Equal(t, wantStatus, closed.Status)
					require.Equal(t, wantStatus, closed.Phase)
					require.Equal(t, i+2, closed.Version)
					evs := c.Events(t, tk.ID)
					last := evs[len(evs)-1]
					require.Equal(t, "task_"+strings.ToLower(wantStatus), last.Type)
					var data struct{ Phase, Reason string }
					require.NoError(t, json.Unmarshal(last.Data, &data))
					require.Equal(t, phase, data.Phase, "the closing event records the phase it closed from")
					if closeWith == "cancel" {
						require.Equal(t, "changed plans", data.Reason)
					}

					// Final stays final: every phase, complete and cancel are refused.
					for _, to := range append(append([]string{}, workPhases...), "COMPLETED", "CANCELLED") {
						e := c.Fail(t, apptest.TransitionMutation, map[string]any{"id": tk.ID, "to": to})
						apptest.RequireError(t, e, ipa.ECONFLICT, wantReason)
					}
					apptest.RequireError(t, c.Fail(t, completeMutation, map[string]any{"id": tk.ID}), ipa.ECONFLICT, wantReason)
					apptest.RequireError(t, c.Fail(t, cancelMutation, map[string]any{"id": tk.ID, "reason": "again"}), ipa.ECONFLICT, wantReason)
					require.Equal(t, closed, c.Get(t, tk.ID))
				}
			}
		})
	})
}

func TestEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		c := b.anon()

		t.Run("StreamAndCorrelation", func(t *testing.T) {
			withID := func(id string) map[string]string { return map[string]string{"X-Request-Id": id} }
			r := c.Do(t, request{Query: apptest.CreateTaskMutation, Vars: map[string]any{"input": map[string]any{"title": "traced"}}, Headers: withID("req-create-1")})
			require.Empty(t, r.Errors)
			require.Equal(t, "req-create-1", r.Header.Get("X-Request-Id"))
			require.Equal(t, "req-create-1", r.Extensions["correlationId"])
			var created struct {
				CreateTask struct{ Task task } `json:"createTask"`
			}
			require.NoError(t, json.Unmarshal(r.Data, &created))
			id := created.CreateTask.Task.ID

			r = c.Do(t, request{Query: apptest.TransitionMutation, Vars: map[string]any{"id": id, "to": "PLANNING"}, Headers: withID("req-plan-2")})
			require.Empty(t, r.Errors)
			require.Equal(t, "req-plan-2", r.Extensions["correlationId"])

			// No header: one is generated, echoed in the header and the extensions.
			r = c.Do(t, request{Query: apptest.TransitionMutation, Vars: map[string]any{"id": id, "to": "DEVELOPMENT"}})
			require.Empty(t, r.Errors)
			generated := r.Header.Get("X-Request-Id")
			require.NotEmpty(t, generated)
			require.Equal(t, generated, r.Extensions["correlationId"])

			// An unusable header (control characters, spaces) is replaced.
			r = c.Do(t, request{Query: apptest.TransitionMutation, Vars: map[string]any{"id": id, "to": "REVIEW"}, Headers: withID("has spaces in it")})
			require.Empty(t, r.Errors)
			replaced := r.Header.Get("X-Request-Id")
			require.NotEqual(t, "has spaces in it", replaced)
			require.NotEmpty(t, replaced)
			require.NotEqual(t, generated, replaced)
			require.Equal(t, replaced, r.Extensions["correlationId"])

			r = c.Do(t, request{Query: cancelMutation, Vars: map[string]any{"id": id, "reason": "done here"}, Headers: withID("req-cancel-5")})
			require.Empty(t, r.Errors)

			evs := c.Events(t, id)
			require.Len(t, evs, 5)
			wantTypes := []string{"task_created", "phase_changed", "phase_changed", "phase_changed", "task_cancelled"}
			wantCorr := []string{"req-create-1", "req-plan-2", generated, replaced, "req-cancel-5"}
			var lastPos int64 = -1
			seen := map[string]bool{}
			for i, e := range evs {
				require.Equal(t, i+1, e.Version, "versions are 1..n with no gap")
				require.Equal(t, id, e.TaskID)
				require.Equal(t, wantTypes[i], e.Type)
				require.NotNil(t, e.ActorID)
				require.Equal(t, "local", *e.ActorID)
				require.NotNil(t, e.CorrelationID)
				require.Equal(t, wantCorr[i], *e.CorrelationID)
				pos, err := strconv.ParseInt(e.Position, 10, 64)
				require.NoError(t, err, "position is a decimal 64-bit integer")
				require.Equal(t, strconv.FormatInt(pos, 10), e.Position, "position is canonical decimal")
				require.Greater(t, pos, lastPos, "positions strictly increase")
				lastPos = pos
				require.False(t, seen[e.ID], "event ids are unique")
				seen[e.ID] = true
				require.False(t, e.OccurredAt.IsZero())
			}
		})

		t.Run("VersionsAndPositionsUnderConcurrency", func(t *testing.T) {
			const tasks = 8
			ids := make([]string, tasks)
			var wg sync.WaitGroup
			for i := range ids {
				wg.Go(func() {
					tk := c.CreateTitled(t, fmt.Sprintf("concurrent %d", i))
					for _, p := range workPhases[1:] {
						c.transition(t, tk.ID, p)
					}
					c.complete(t, tk.ID)
					ids[i] = tk.ID
				})
			}
			wg.Wait()
			positions := map[int64]bool{}
			for _, id := range ids {
				evs := c.Events(t, id)
				require.Len(t, evs, 5)
				var last int64 = -1
				for i, e := range evs {
					require.Equal(t, i+1, e.Version)
					pos, err := strconv.ParseInt(e.Position, 10, 64)
					require.NoError(t, err)
					require.Greater(t, pos, last)
					last = pos
					require.False(t, positions[pos], "position %d used twice", pos)
					positions[pos] = true
				}
			}
		})

		t.Run("Pagination", func(t *testing.T) {
			tk := c.CreateTitled(t, "paged")
			for range 3 {
				c.transition(t, tk.ID, "PLANNING")
				c.transition(t, tk.ID, "SPEC_CLARIFICATION")
			}
			c.complete(t, tk.ID) // 1 created + 6 phase changes + 1 completed = 8
			all := c.Events(t, tk.ID)
			require.Len(t, all, 8)

			type page struct {
				Task struct {
					Events struct {
						Edges []struct {
							Cursor string
							Node   event
						}
						PageInfo struct {
							HasNextPage, HasPreviousPage bool
							StartCursor, EndCursor       *string
						}
						TotalCount int
					}
				}
			}
			const q = `query($id: ID!, $first: Int, $after: String, $types: [String!]) { task(id: $id) {
				events(first: $first, after: $after, types: $types) {
					edges { cursor node { ` + apptest.EventFields + ` } }
					pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
					totalCount } } }`
			walk := func(first int, types []string) []event {
				var out []event
				var after any
				for pages := 0; ; pages++ {
					require.Less(t, pages, 20)
					var p page
					c.Must(t, q, map[string]any{"id": tk.ID, "first": first, "after": after, "types": types}, &p)
					ev := p.Task.Events
					require.LessOrEqual(t, len(ev.Edges), first)
					require.Equal(t, after != nil, ev.PageInfo.HasPreviousPage)
					if len(ev.Edges) > 0 {
						require.Equal(t, ev.Edges[0].Cursor, *ev.PageInfo.StartCursor)
						require.Equal(t, ev.Edges[len(ev.Edges)-1].Cursor, *ev.PageInfo.EndCursor)
					}
					for _, e := range ev.Edges {
						out = append(out, e.Node)
					}
					if !ev.PageInfo.HasNextPage {
						return out
					}
					require.Len(t, ev.Edges, first, "only the last page is short")
					after = *ev.PageInfo.EndCursor
				}
			}
			for _, first := range []int{1, 3, 8, 100} {
				require.Equal(t, all, walk(first, nil), "first=%d", first)
			}
			phases := walk(4, []string{"phase_changed"})
			require.Len(t, phases, 6)
			for _, e := range phases {
				require.Equal(t, "phase_changed", e.Type)
			}
			require.Equal(t, all[1:7], phases)
			both := walk(2, []string{"task_created", "task_completed"})
			require.Equal(t, []event{all[0], all[7]}, both)
			require.Empty(t, walk(5, []string{"no_such_type"}))

			var p page
			c.Must(t, q, map[string]any{"id": tk.ID, "first": 2, "types": []string{"phase_changed"}}, &p)
			require.Equal(t, 6, p.Task.Events.TotalCount)
			c.Must(t, q, map[string]any{"id": tk.ID, "first": 2}, &p)
			require.Equal(t, 8, p.Task.Events.TotalCount)
		})
	})
}

func TestReprojectAfterWorkload(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		c := b.anon()
		var wg sync.WaitGroup
		for i := range 12 {
			wg.Go(func() {
				tk := c.Create(t, map[string]any{"title": fmt.Sprintf("work %d", i), "metadata": map[string]any{"i": i}})
				for _, p := range workPhases[1 : 1+i%4] {
					c.transition(t, tk.ID, p)
				}
				if i%4 == 3 {
					c.transition(t, tk.ID, "DEVELOPMENT") // back for rework
				}
				switch i % 3 {
				case 0:
					c.complete(t, tk.ID)
				case 1:
					c.cancel(t, tk.ID, fmt.Sprintf("reason %d", i))
				}
				// Refusals in the mix must not disturb the projection.
				c.GQL(t, apptest.TransitionMutation, map[string]any{"id": tk.ID, "to": "COMPLETED"})
			})
		}
		wg.Wait()
		require.Equal(t, 12, c.Count(t, nil))
		require.Equal(t, 4, c.Count(t, map[string]any{"status": []string{"COMPLETED"}}))
		require.Equal(t, 4, c.Count(t, map[string]any{"status": []string{"CANCELLED"}}))
		diff, err := b.Store.Reproject(context.Background(), true)
		require.NoError(t, err)
		require.Zero(t, diff, "the tasks table differs from the fold of the event log")
	})
}

func TestCorrelationIDOnRefusedRequests(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend, apptest.WithAuthMode("required"))
		r := b.anon().Do(t, request{Query: `{ viewer { id } }`, Headers: map[string]string{"X-Request-Id": "refused-1"}})
		require.Equal(t, http.StatusUnauthorized, r.Status)
		require.Len(t, r.Errors, 1)
		require.Equal(t, "refused-1", r.Errors[0].Extensions["correlationId"])
		require.Equal(t, "refused-1", r.Extensions["correlationId"])
		require.Equal(t, "refused-1", r.Header.Get("X-Request-Id"))
	})
}
