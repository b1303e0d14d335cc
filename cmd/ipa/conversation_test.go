package main

// Conversations with real pods over real sockets: a runtime built on the
// public SDK (sdk/pod/testdata/chatty) receives messages and asks, run by a
// real server from its --plugin-dir.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/cmd/ipa/ipacli"
	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/webhook"
)

// buildChatty builds the SDK's conversation runtime into pluginDir.
func buildChatty(t testing.TB, pluginDir string) {
	t.Helper()
	build := exec.Command("go", "build", "-o", filepath.Join(pluginDir, "chatty"), "./sdk/pod/testdata/chatty")
	build.Dir = repoRoot(t)
	build.Env = append(os.Environ(), "GOFLAGS=")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build chatty: %v\n%s", err, b)
	}
}

// outputLines are the task's pod_output lines, in order.
func (s *server) outputLines(t testing.TB, id string) []string {
	t.Helper()
	var lines []string
	for _, e := range s.events(t, id, "pod_output") {
		for _, l := range dataField[[]struct{ Stream, Text string }](t, e, "lines") {
			lines = append(lines, l.Text)
		}
	}
	return lines
}

func (s *server) sendMessage(t testing.TB, id, text string) string {
	t.Helper()
	var out struct {
		SendMessage struct {
			Message struct{ ID string }
		}
	}
	s.must(t, `mutation($id: ID!, $text: String!) { sendMessage(taskId: $id, text: $text) { message { id } } }`,
		map[string]any{"id": id, "text": text}, &out)
	return out.SendMessage.Message.ID
}

type requestView struct {
	ID         string   `json:"id"`
	Kind       string   `json:"kind"`
	Prompt     string   `json:"prompt"`
	Options    []string `json:"options"`
	State      string   `json:"state"`
	ExpiresAt  *string  `json:"expiresAt"`
	Answer     *string  `json:"answer"`
	Approved   *bool    `json:"approved"`
	AnsweredBy *string  `json:"answeredBy"`
	Task       struct{ ID string }
}

const requestFields = `id kind prompt options state expiresAt answer approved answeredBy task { id }`

func (s *server) pending(t testing.TB, id string) []requestView {
	t.Helper()
	var out struct {
		Task struct{ PendingRequests []requestView }
	}
	s.must(t, `query($id: ID!) { task(id: $id) { pendingRequests { `+requestFields+` } } }`, map[string]any{"id": id}, &out)
	return out.Task.PendingRequests
}

func (s *server) inbox(t testing.TB, state string) []requestView {
	t.Helper()
	var out struct {
		InputRequests struct{ Edges []struct{ Node requestView } }
	}
	s.must(t, `query($s: InputRequestState) { inputRequests(state: $s, first: 100) { edges { node { `+requestFields+` } } } }`,
		map[string]any{"s": state}, &out)
	var list []requestView
	for _, e := range out.InputRequests.Edges {
		list = append(list, e.Node)
	}
	return list
}

// waitPending waits for the task's one pending request.
func (s *server) waitPending(t testing.TB, id string) requestView {
	t.Helper()
	var r requestView
	eventually(t, 60*time.Second, func() string {
		p := s.pending(t, id)
		if len(p) != 1 {
			return fmt.Sprintf("%d pending requests", len(p))
		}
		r = p[0]
		return ""
	})
	return r
}

// waitLine waits for an output line starting with prefix and returns it.
func (s *server) waitLine(t testing.TB, id, prefix string) string {
	t.Helper()
	var got string
	eventually(t, 60*time.Second, func() string {
		for _, l := range s.outputLines(t, id) {
			if strings.HasPrefix(l, prefix) {
				got = l
				return ""
			}
		}
		return fmt.Sprintf("no line %q yet; output %q", prefix, s.outputLines(t, id))
	})
	return got
}

// Messages sent before the pod starts and while it runs arrive once each,
// in order, and are acknowledged with message_delivered; the server's
// restart in between changes none of that.
func TestMessagesReachTheRunningPod(t *testing.T) {
	t.Parallel()
	dir := newPluginDir(t)
	buildChatty(t, dir)
	h := newHome(t, "--plugin-dir", dir)
	s := h.start()
	id := s.createTask(t, map[string]any{"title": "chat", "runtime": "chatty"})
	first := s.sendMessage(t, id, "before start")
	s.startPod(t, id)
	s.waitPod(t, id, "RUNNING", "", 0, 60*time.Second)
	s.sendMessage(t, id, "while running")
	s.waitLine(t, id, "got: while running")

	// kill -9 of the server: the plugin keeps running; messages sent to
	// the new server reach it through the reattached host.
	s.crash(t)
	s = h.start()
	eventually(t, 60*time.Second, func() string {
		if len(s.events(t, id, "pod_reattached")) == 0 {
			return "not reattached"
		}
		return ""
	})
	s.sendMessage(t, id, "after the server's restart")
	s.waitLine(t, id, "got: after the server's restart")

	want := []string{"got: before start", "got: while running", "got: after the server's restart"}
	var got []string
	for _, l := range s.outputLines(t, id) {
		if strings.HasPrefix(l, "got: ") {
			got = append(got, l)
		}
	}
	if !slices.Equal(got, want) {
		for _, e := range s.events(t, id) {
			t.Logf("%d %s %s %s", e.Version, e.Type, e.OccurredAt, e.Data)
		}
		t.Fatalf("the pod got %q, want %q", got, want)
	}
	eventually(t, 30*time.Second, func() string {
		if n := len(s.events(t, id, "message_delivered")); n != 3 {
			return fmt.Sprintf("%d message_delivered", n)
		}
		return ""
	})
	var out struct {
		Task struct {
			Messages struct {
				TotalCount int
				Edges      []struct {
					Node struct {
						ID, Text, SentBy string
						Delivered        bool
					}
				}
			}
		}
	}
	s.must(t, `query($id: ID!) { task(id: $id) { messages(first: 10) { totalCount edges { node { id text sentBy delivered } } } } }`,
		map[string]any{"id": id}, &out)
	m := out.Task.Messages
	if m.TotalCount != 3 || len(m.Edges) != 3 || m.Edges[0].Node.ID != first || m.Edges[0].Node.Text != "before start" || !m.Edges[2].Node.Delivered || m.Edges[0].Node.SentBy == "" {
		t.Fatalf("Task.messages: %+v", m)
	}
	// A closed task takes no messages.
	s.must(t, `mutation($id: ID!) { cancelTask(taskId: $id, reason: "done") { task { id } } }`, map[string]any{"id": id}, nil)
	s.mustFail(t, `mutation($id: ID!) { sendMessage(taskId: $id, text: "late") { message { id } } }`, map[string]any{"id": id}, "CONFLICT", "ALREADY_CANCELLED")
	s.mustFail(t, `mutation($id: ID!) { sendMessage(taskId: $id, text: "") { message { id } } }`, map[string]any{"id": id}, "BAD_USER_INPUT", "INVALID_ARGUMENT")
}

// A runtime asks for approval, is killed -9 while it waits, and its next
// run (asking again under the same key) gets the answer given meanwhile.
// The request shows in Task.pendingRequests and in the inbox until then; a
// second answer is refused.
func TestAskSurvivesThePodsKill(t *testing.T) {
	t.Parallel()
	dir := newPluginDir(t)
	buildChatty(t, dir)
	s := newHome(t, "--plugin-dir", dir).start()
	id := s.createTask(t, map[string]any{"title": "ask", "runtime": "chatty", "autoStart": true,
		"runtimeConfig": map[string]any{"ask": map[string]any{"kind": "APPROVAL", "prompt": "Deploy to prod?"}},
		"restartPolicy": map[string]any{"autoRestart": true, "initialBackoffMs": 3000, "maxBackoffMs": 3000}})
	r := s.waitPending(t, id)
	if r.Kind != "APPROVAL" || r.Prompt != "Deploy to prod?" || r.State != "PENDING" || r.Task.ID != id || r.ExpiresAt != nil {
		t.Fatalf("pending request: %+v", r)
	}
	if inbox := s.inbox(t, "PENDING"); len(inbox) != 1 || inbox[0].ID != r.ID {
		t.Fatalf("inbox: %+v", inbox)
	}
	pid := s.task(t, id).Pod.PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string {
		if tv := s.task(t, id); len(tv.Pod.Crashes) == 0 {
			return "no crash yet: " + tv.Pod.State
		}
		return ""
	})
	// Answered while no pod runs (it is in back-off).
	var out struct {
		AnswerRequest struct{ Request requestView }
	}
	s.must(t, `mutation($r: ID!) { answerRequest(requestId: $r, approve: true, comment: "go") { request { `+requestFields+` } } }`,
		map[string]any{"r": r.ID}, &out)
	if a := out.AnswerRequest.Request; a.State != "ANSWERED" || a.Approved == nil || !*a.Approved || a.AnsweredBy == nil || *a.AnsweredBy == "" {
		t.Fatalf("answered request: %+v", a)
	}
	s.mustFail(t, `mutation($r: ID!) { answerRequest(requestId: $r, approve: false) { request { id } } }`,
		map[string]any{"r": r.ID}, "CONFLICT", "ALREADY_ANSWERED")
	line := s.waitLine(t, id, "answer: ")
	if !strings.HasPrefix(line, "answer: ANSWERED  approved=true by=") {
		t.Fatalf("the restarted runtime got %q", line)
	}
	if tv := s.task(t, id); tv.Pod.PID == pid {
		t.Fatalf("the answer reached the killed process %d?", pid)
	}
	if n := len(s.events(t, id, "input_requested")); n != 1 {
		t.Fatalf("%d input_requested events; asking again under the key must not ask anew", n)
	}
	if p := s.pending(t, id); len(p) != 0 {
		t.Fatalf("pending after the answer: %+v", p)
	}
	if inbox := s.inbox(t, "ANSWERED"); len(inbox) != 1 || inbox[0].ID != r.ID {
		t.Fatalf("answered inbox: %+v", inbox)
	}
}

// A request that nobody answers expires (input_expired) and the asking call
// returns EXPIRED; a pending request is cancelled when its task closes.
func TestAskExpiresAndIsCancelledByClose(t *testing.T) {
	t.Parallel()
	dir := newPluginDir(t)
	buildChatty(t, dir)
	s := newHome(t, "--plugin-dir", dir).start()
	id := s.createTask(t, map[string]any{"title": "expire", "runtime": "chatty", "autoStart": true,
		"runtimeConfig": map[string]any{"ask": map[string]any{"kind": "QUESTION", "prompt": "Name?", "timeoutMs": 1500}}})
	r := s.waitPending(t, id)
	if r.ExpiresAt == nil {
		t.Fatalf("no expiresAt: %+v", r)
	}
	if line := s.waitLine(t, id, "answer: "); !strings.HasPrefix(line, "answer: EXPIRED") {
		t.Fatalf("got %q", line)
	}
	if n := len(s.events(t, id, "input_expired")); n != 1 {
		t.Fatalf("%d input_expired", n)
	}
	s.mustFail(t, `mutation($r: ID!) { answerRequest(requestId: $r, answer: "late") { request { id } } }`,
		map[string]any{"r": r.ID}, "CONFLICT", "REQUEST_CLOSED")

	id = s.createTask(t, map[string]any{"title": "cancel", "runtime": "chatty", "autoStart": true,
		"runtimeConfig": map[string]any{"ask": map[string]any{"kind": "CHOICE", "prompt": "Which?", "options": []string{"a", "b"}}}})
	r = s.waitPending(t, id)
	if !slices.Equal(r.Options, []string{"a", "b"}) {
		t.Fatalf("options %q", r.Options)
	}
	s.mustFail(t, `mutation($r: ID!) { answerRequest(requestId: $r, answer: "c") { request { id } } }`,
		map[string]any{"r": r.ID}, "BAD_USER_INPUT", "INVALID_ARGUMENT")
	s.must(t, `mutation($id: ID!) { cancelTask(taskId: $id, reason: "enough") { task { id } } }`, map[string]any{"id": id}, nil)
	var out struct{ Node requestView }
	s.must(t, `query($r: ID!) { node(id: $r) { ... on InputRequest { `+requestFields+` } } }`, map[string]any{"r": r.ID}, &out)
	if out.Node.State != "CANCELLED" {
		t.Fatalf("after the task's close: %+v", out.Node)
	}
	if inbox := s.inbox(t, "CANCELLED"); len(inbox) != 1 || inbox[0].ID != r.ID {
		t.Fatalf("cancelled inbox: %+v", inbox)
	}
}

// An exec pod's shell script asks through "$IPA_BIN" pod ask and branches on
// the exit status: 0 approved, 1 rejected, 2 expired; a question prints its
// answer; "$IPA_BIN" pod messages prints the messages as JSON lines.
func TestExecPodAsks(t *testing.T) {
	t.Parallel()
	s := newHome(t).start()
	script := `"$IPA_BIN" pod ask --approval "Deploy to prod?" --timeout "$T"; echo "exit=$?"`
	run := func(title, timeout string) string {
		return s.createTask(t, map[string]any{"title": title, "runtime": "exec", "autoStart": true,
			"restartPolicy": map[string]any{"autoRestart": false},
			"runtimeConfig": map[string]any{"command": []string{"sh", "-c", script}, "env": map[string]string{"T": timeout}}})
	}
	approve, reject, expire := run("approve", "10m"), run("reject", "10m"), run("expire", "1s")
	for id, yes := range map[string]bool{approve: true, reject: false} {
		r := s.waitPending(t, id)
		if r.Kind != "APPROVAL" || r.Prompt != "Deploy to prod?" || r.ExpiresAt == nil {
			t.Fatalf("request: %+v", r)
		}
		s.must(t, `mutation($r: ID!, $y: Boolean!) { answerRequest(requestId: $r, approve: $y) { request { id } } }`,
			map[string]any{"r": r.ID, "y": yes}, nil)
	}
	for id, want := range map[string]string{approve: "exit=0", reject: "exit=1", expire: "exit=2"} {
		if got := s.waitLine(t, id, "exit="); got != want {
			t.Errorf("task %s: %q, want %q", id, got, want)
		}
	}

	// A question prints its answer; messages come as JSON lines, once each.
	id := s.createTask(t, map[string]any{"title": "question", "runtime": "exec",
		"restartPolicy": map[string]any{"autoRestart": false},
		"runtimeConfig": map[string]any{"command": []string{"sh", "-c",
			`"$IPA_BIN" pod messages; A=$("$IPA_BIN" pod ask "Name?"); echo "name=$A"; "$IPA_BIN" pod messages --follow | head -n 1`}}})
	s.sendMessage(t, id, "first")
	s.startPod(t, id)
	r := s.waitPending(t, id)
	s.sendMessage(t, id, "second")
	s.must(t, `mutation($r: ID!) { answerRequest(requestId: $r, answer: "Ada") { request { id } } }`, map[string]any{"r": r.ID}, nil)
	s.waitLine(t, id, "name=Ada")
	eventually(t, 60*time.Second, func() string {
		var texts []string
		for _, l := range s.outputLines(t, id) {
			var m struct{ ID, Text, SentBy string }
			if json.Unmarshal([]byte(l), &m) == nil && m.ID != "" {
				texts = append(texts, m.Text)
			}
		}
		if !slices.Equal(texts, []string{"first", "second"}) {
			return fmt.Sprintf("messages printed: %q (output %q)", texts, s.outputLines(t, id))
		}
		return ""
	})
	eventually(t, 30*time.Second, func() string {
		if n := len(s.events(t, id, "message_delivered")); n != 2 {
			return fmt.Sprintf("%d message_delivered", n)
		}
		return ""
	})
}

// Two servers on one PostgreSQL database: the pod runs on A; messages sent
// and answers given through B reach it, once each and in order.
func TestConversationAcrossInstances(t *testing.T) {
	url := dbtest.URL(t, "postgres")
	dir := newPluginDir(t)
	buildChatty(t, dir)
	a, b := newHome(t, "--plugin-dir", dir), newHome(t, "--plugin-dir", dir)
	a.db, b.db = url, url
	sa, sb := a.start(), b.start()

	id := sa.createTask(t, map[string]any{"title": "cross chat", "runtime": "chatty",
		"runtimeConfig": map[string]any{"ask": map[string]any{"kind": "QUESTION", "prompt": "Colour?"}}})
	sb.sendMessage(t, id, "one")
	sa.startPod(t, id)
	sa.waitPod(t, id, "RUNNING", "", 0, 60*time.Second)
	sb.sendMessage(t, id, "two")
	sb.sendMessage(t, id, "three")
	r := sb.waitPending(t, id)
	sb.must(t, `mutation($r: ID!) { answerRequest(requestId: $r, answer: "green") { request { id } } }`, map[string]any{"r": r.ID}, nil)
	if line := sa.waitLine(t, id, "answer: "); !strings.HasPrefix(line, "answer: ANSWERED green") {
		t.Fatalf("the pod on A got %q", line)
	}
	sa.waitLine(t, id, "got: three")
	var got []string
	for _, l := range sa.outputLines(t, id) {
		if strings.HasPrefix(l, "got: ") {
			got = append(got, l)
		}
	}
	if want := []string{"got: one", "got: two", "got: three"}; !slices.Equal(got, want) {
		t.Fatalf("the pod got %q, want %q", got, want)
	}
	eventually(t, 30*time.Second, func() string {
		if n := len(sb.events(t, id, "message_delivered")); n != 3 {
			return fmt.Sprintf("%d message_delivered", n)
		}
		return ""
	})
}

// Phase gates: a person's move into a gated phase opens an approval its
// requester may not give; another actor's approval moves the task. The demo
// runtime waits at a gate until it is approved; a rejection is recorded.
func TestPhaseGates(t *testing.T) {
	t.Parallel()
	s := newHome(t).start()
	id := s.createTask(t, map[string]any{"title": "gated", "approvals": []string{"PLANNING"}})
	var moved struct{ TransitionPhase struct{ Task taskView } }
	s.must(t, `mutation($id: ID!) { transitionPhase(taskId: $id, to: PLANNING, note: "ready") { task { id phase } } }`, map[string]any{"id": id}, &moved)
	if moved.TransitionPhase.Task.Phase != "SPEC_CLARIFICATION" {
		t.Fatalf("a gated move happened: %+v", moved)
	}
	r := s.waitPending(t, id)
	if r.Kind != "APPROVAL" {
		t.Fatalf("gate request: %+v", r)
	}
	if n := len(s.events(t, id, "transition_requested")); n != 1 {
		t.Fatalf("%d transition_requested", n)
	}
	// The requester (the local actor) may not approve its own move.
	s.mustFail(t, `mutation($r: ID!) { answerRequest(requestId: $r, approve: true) { request { id } } }`,
		map[string]any{"r": r.ID}, "FORBIDDEN", "SELF_APPROVAL")
	if tv := s.task(t, id); tv.Phase != "SPEC_CLARIFICATION" {
		t.Fatalf("after a refused self-approval: %s", tv.Phase)
	}

	// The demo runtime asks for PLANNING, which this task gates: it waits
	// there; a person (another actor than the runtime) approves and it
	// moves on to DEVELOPMENT, which is not gated.
	demo := s.createTask(t, map[string]any{"title": "demo gated", "autoStart": true, "approvals": []string{"PLANNING"},
		"runtimeConfig": demoConfig(50)})
	g := s.waitPending(t, demo)
	time.Sleep(500 * time.Millisecond) // the demo keeps asking meanwhile: still one request
	if p := s.pending(t, demo); len(p) != 1 || s.task(t, demo).Phase != "SPEC_CLARIFICATION" {
		t.Fatalf("at the gate: %+v, phase %s", p, s.task(t, demo).Phase)
	}
	s.must(t, `mutation($r: ID!) { answerRequest(requestId: $r, approve: true, comment: "ok") { request { id } } }`, map[string]any{"r": g.ID}, nil)
	eventually(t, 60*time.Second, func() string {
		if tv := s.task(t, demo); tv.Phase != "REVIEW" {
			return "demo in " + tv.Phase
		}
		return ""
	})
	if a, p := s.events(t, demo, "transition_approved"), s.events(t, demo, "phase_changed"); len(a) != 1 || len(p) != 3 || dataField[string](t, p[0], "to") != "PLANNING" {
		t.Fatalf("transition_approved %d, phase_changed %+v", len(a), p)
	}

	// Rejected: transition_rejected, no move.
	demo = s.createTask(t, map[string]any{"title": "demo rejected", "autoStart": true, "approvals": []string{"PLANNING"},
		"runtimeConfig": demoConfig(50)})
	g = s.waitPending(t, demo)
	s.must(t, `mutation($r: ID!) { answerRequest(requestId: $r, approve: false) { request { id } } }`, map[string]any{"r": g.ID}, nil)
	if n := len(s.events(t, demo, "transition_rejected")); n != 1 {
		t.Fatalf("%d transition_rejected", n)
	}
}

// A budget stops a pod: usage_reported totals in Task.usage and
// Query.usage; over the budget, budget_exceeded and pod_stopped with reason
// "budget"; a start is refused until the budget is raised.
func TestBudgetStopsAPod(t *testing.T) {
	t.Parallel()
	dir := newPluginDir(t)
	buildChatty(t, dir)
	s := newHome(t, "--plugin-dir", dir).start()
	id := s.createTask(t, map[string]any{"title": "spender", "runtime": "chatty", "autoStart": true,
		"labels": map[string]string{"team": "a"}, "budget": map[string]any{"tokens": 100},
		"runtimeConfig": map[string]any{"usageEveryMs": 100}})
	eventually(t, 60*time.Second, func() string {
		if evs := s.events(t, id, "pod_stopped"); len(evs) == 0 || dataField[string](t, evs[0], "reason") != "budget" {
			return fmt.Sprintf("pod_stopped %+v", evs)
		}
		return ""
	})
	ex := s.events(t, id, "budget_exceeded")
	if len(ex) != 1 || dataField[string](t, ex[0], "limit") != "tokens" {
		t.Fatalf("budget_exceeded: %+v", ex)
	}
	type usage struct{ InputTokens, OutputTokens, CostMicros int }
	var out struct {
		Task struct {
			Status string
			Usage  usage
			Budget struct{ Tokens *int }
		}
		Usage usage
	}
	q := `query($id: ID!) { task(id: $id) { status usage { inputTokens outputTokens costMicros } budget { tokens } }
		usage(filter: {labels: {team: "a"}}) { inputTokens outputTokens costMicros } }`
	s.must(t, q, map[string]any{"id": id}, &out)
	n := len(s.events(t, id, "usage_reported"))
	if u := out.Task.Usage; out.Task.Status != "INACTIVE" || n < 4 || u.InputTokens != 20*n || u.OutputTokens != 10*n || u.CostMicros != 5*n || out.Usage != u {
		t.Fatalf("after the budget stop: %+v (%d reports)", out, n)
	}
	s.mustFail(t, `mutation($id: ID!) { startPod(taskId: $id) { started } }`, map[string]any{"id": id}, "CONFLICT", "BUDGET_EXCEEDED")
	s.must(t, `mutation($id: ID!) { updateTask(taskId: $id, input: {budget: {tokens: 100000}}) { task { id } } }`, map[string]any{"id": id}, nil)
	if started, _ := s.startPod(t, id); !started {
		t.Fatal("the pod did not start after the budget was raised")
	}
}

// The CLI's side: ipa task send, ipa inbox, ipa task answer, with roles:
// viewers read the inbox, operators send and answer, every answer carries
// its actor; a phase gate is refused to its own requester and approved by
// another operator.
func TestConversationCLI(t *testing.T) {
	t.Parallel()
	dir := newPluginDir(t)
	buildChatty(t, dir)
	h := newHome(t, "--plugin-dir", dir)
	s := h.start()
	_, ops := h.mintCLI(t, "ops", "operator")
	_, ann := h.mintCLI(t, "ann", "operator")
	_, eve := h.mintCLI(t, "eve", "viewer")

	id := lastLine(s.on(t, ops, 0, "create", "cli chat", "--runtime", "chatty", "--start",
		"--config", `{"ask": {"kind": "QUESTION", "prompt": "Colour?"}}`).stdout)
	if r := s.on(t, ops, 0, "send", id, "hello there", "--data", `{"k": 1}`); !strings.HasPrefix(r.stdout, "message ") {
		t.Fatalf("send: %q", r.stdout)
	}
	if r := s.on(t, eve, ipacli.ExitAuth, "send", id, "no"); !strings.Contains(r.stderr, "FORBIDDEN") {
		t.Fatalf("a viewer's send: %q", r.stderr)
	}
	var reqID string
	eventually(t, 60*time.Second, func() string {
		r := cli(t, []string{"IPA_SERVER=" + s.url, "IPA_TOKEN=" + eve}, "inbox", "-o", "json")
		var out struct {
			InputRequests struct {
				Edges []struct{ Node requestView }
			}
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil {
			t.Fatalf("inbox: exit %d %s %s", r.code, r.stdout, r.stderr)
		}
		if len(out.InputRequests.Edges) != 1 {
			return fmt.Sprintf("inbox %s", r.stdout)
		}
		reqID = out.InputRequests.Edges[0].Node.ID
		return ""
	})
	if r := cli(t, []string{"IPA_SERVER=" + s.url, "IPA_TOKEN=" + eve}, "inbox"); r.code != 0 || !strings.Contains(r.stdout, reqID) || !strings.Contains(r.stdout, "Colour?") {
		t.Fatalf("inbox table: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := s.on(t, eve, ipacli.ExitAuth, "answer", reqID, "red"); !strings.Contains(r.stderr, "FORBIDDEN") {
		t.Fatalf("a viewer's answer: %q", r.stderr)
	}
	if r := s.on(t, ann, 0, "answer", reqID, "blue", "--comment", "my pick"); !strings.Contains(r.stdout, "ANSWERED") {
		t.Fatalf("answer: %q", r.stdout)
	}
	s.on(t, ops, ipacli.ExitConflict, "answer", reqID, "green")
	line := s.waitLineAs(t, eve, id, "answer: ")
	if line != "answer: ANSWERED blue approved=false by=ann" {
		t.Fatalf("the pod got %q", line)
	}
	s.waitLineAs(t, eve, id, "got: hello there")

	// A phase gate: ops asks, ops may not approve, ann may.
	gated := lastLine(s.on(t, ops, 0, "create", "gated", "--approval", "planning").stdout)
	s.on(t, ops, 0, "move", gated, "PLANNING")
	var gate string
	eventually(t, 30*time.Second, func() string {
		r := cli(t, []string{"IPA_SERVER=" + s.url, "IPA_TOKEN=" + eve}, "inbox", "-o", "json")
		var out struct {
			InputRequests struct {
				Edges []struct{ Node requestView }
			}
		}
		_ = json.Unmarshal([]byte(r.stdout), &out)
		for _, e := range out.InputRequests.Edges {
			if e.Node.Task.ID == gated {
				gate = e.Node.ID
				return ""
			}
		}
		return "no gate request: " + r.stdout
	})
	if r := s.on(t, ops, ipacli.ExitAuth, "answer", gate, "--approve"); !strings.Contains(r.stderr, "SELF_APPROVAL") {
		t.Fatalf("self-approval: %q", r.stderr)
	}
	s.on(t, ann, 0, "answer", gate, "--approve")
	r := s.on(t, eve, 0, "get", gated, "-o", "json")
	if !strings.Contains(r.stdout, `"PLANNING"`) {
		t.Fatalf("after the approval: %s", r.stdout)
	}
}

// waitLineAs is waitLine with a token.
func (s *server) waitLineAs(t *testing.T, token, id, prefix string) string {
	t.Helper()
	var got string
	eventually(t, 60*time.Second, func() string {
		r := s.on(t, token, 0, "events", id, "--types", "pod_output", "--all", "-o", "json")
		for _, l := range strings.Split(r.stdout, "\n") {
			if i := strings.Index(l, prefix); i >= 0 {
				got = l[i:]
				if j := strings.IndexByte(got, '"'); j >= 0 {
					got = got[:j]
				}
				return ""
			}
		}
		return "no " + prefix
	})
	return got
}

// The server dies (kill -9) while a runtime waits on its question; the next
// server reattaches, takes the answer, and the same plugin process's Ask
// call returns it.
func TestAskSurvivesTheServersKill(t *testing.T) {
	t.Parallel()
	dir := newPluginDir(t)
	buildChatty(t, dir)
	h := newHome(t, "--plugin-dir", dir)
	s := h.start()
	id := s.createTask(t, map[string]any{"title": "ask across", "runtime": "chatty", "autoStart": true,
		"runtimeConfig": map[string]any{"ask": map[string]any{"kind": "QUESTION", "prompt": "Still there?"}}})
	r := s.waitPending(t, id)
	pid := s.task(t, id).Pod.PID
	s.crash(t)
	s = h.start()
	eventually(t, 60*time.Second, func() string {
		if len(s.events(t, id, "pod_reattached")) == 0 {
			return "not reattached"
		}
		return ""
	})
	s.must(t, `mutation($r: ID!) { answerRequest(requestId: $r, answer: "yes") { request { id } } }`, map[string]any{"r": r.ID}, nil)
	if line := s.waitLine(t, id, "answer: "); !strings.HasPrefix(line, "answer: ANSWERED yes") {
		t.Fatalf("got %q", line)
	}
	if tv := s.task(t, id); tv.Pod.PID != pid {
		t.Fatalf("pid %d, want the reattached %d", tv.Pod.PID, pid)
	}
	if n := len(s.events(t, id, "input_requested")); n != 1 {
		t.Fatalf("%d input_requested", n)
	}
}

// A chat bot's relay: a webhook endpoint subscribed to input_requested gets
// the runtime's question (signed), and its answer through answerRequest
// reaches the runtime.
func TestInputRequestedWebhook(t *testing.T) {
	t.Parallel()
	dir := newPluginDir(t)
	buildChatty(t, dir)
	s := newHome(t, "--plugin-dir", dir, "--webhook-allow-private").start()
	var mu sync.Mutex
	var secret string
	var got []webhook.Payload
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		ts, _ := strconv.ParseInt(req.Header.Get("webhook-timestamp"), 10, 64)
		mu.Lock()
		defer mu.Unlock()
		if !webhook.Verify(secret, req.Header.Get("webhook-id"), ts, body, req.Header.Get("webhook-signature")) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p webhook.Payload
		_ = json.Unmarshal(body, &p)
		got = append(got, p)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	var created struct {
		CreateWebhookEndpoint struct{ Secret string }
	}
	mu.Lock()
	s.must(t, createEndpoint, map[string]any{"in": map[string]any{"url": srv.URL + "/bot", "types": []string{"input_requested"}}}, &created)
	secret = created.CreateWebhookEndpoint.Secret
	mu.Unlock()

	id := s.createTask(t, map[string]any{"title": "relayed", "runtime": "chatty", "autoStart": true,
		"runtimeConfig": map[string]any{"ask": map[string]any{"kind": "APPROVAL", "prompt": "Merge the PR?"}}})
	var p webhook.Payload
	eventually(t, 60*time.Second, func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 1 {
			return fmt.Sprintf("%d deliveries", len(got))
		}
		p = got[0]
		return ""
	})
	var d struct{ RequestID, Kind, Prompt string }
	if err := json.Unmarshal(p.Data.Data, &d); err != nil || p.Type != "input_requested" || p.Data.TaskID != id || d.Kind != "APPROVAL" || d.Prompt != "Merge the PR?" {
		t.Fatalf("delivery %+v (%s)", p, p.Data.Data)
	}
	s.must(t, `mutation($r: ID!) { answerRequest(requestId: $r, approve: true) { request { id } } }`, map[string]any{"r": d.RequestID}, nil)
	if line := s.waitLine(t, id, "answer: "); !strings.HasPrefix(line, "answer: ANSWERED  approved=true") {
		t.Fatalf("got %q", line)
	}
}
