package main

// The conversation contract as a script sees it from an exec pod: the exact
// data fields of the conversation events, the JSON lines of `ipa pod
// messages`, messages sent while no pod runs delivered in order at the next
// start, the inbox's default state, backwards paging of Task.messages, and
// an `ipa pod ask` that outlives a kill -9 of its server.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func sortedKeys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// keysOf returns the sorted keys of a JSON object.
func keysOf(t testing.TB, raw json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("not a JSON object: %s", raw)
	}
	return sortedKeys(m)
}

func TestConversationEventFieldsFromAnExecPod(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	script := `"$IPA_BIN" pod messages; C=$("$IPA_BIN" pod ask --choice red --choice blue --timeout 10m "Colour?"); echo "choice=$C"`
	id := s.createTask(t, map[string]any{"title": "fields", "runtime": "exec",
		"restartPolicy": map[string]any{"autoRestart": false},
		"runtimeConfig": map[string]any{"command": []string{"sh", "-c", script}, "env": tagEnv(h)}})

	// Sent while no pod runs: delivered in this order at the start.
	var sent struct {
		SendMessage struct {
			Message struct {
				ID   string
				Data json.RawMessage
			}
		}
	}
	send := `mutation($id: ID!, $text: String!, $data: JSON) { sendMessage(taskId: $id, text: $text, data: $data) { message { id data } } }`
	s.must(t, send, map[string]any{"id": id, "text": "plain"}, &sent)
	plain := sent.SendMessage.Message.ID
	s.must(t, send, map[string]any{"id": id, "text": "with data", "data": map[string]any{"k": 1}}, &sent)
	withData := sent.SendMessage.Message.ID
	s.must(t, send, map[string]any{"id": id, "text": "third"}, nil)
	s.startPod(t, id)

	r := s.waitPending(t, id)
	if r.Kind != "CHOICE" || !slices.Equal(r.Options, []string{"red", "blue"}) || r.ExpiresAt == nil {
		t.Fatalf("request: %+v", r)
	}
	// The inbox without a state argument lists the pending ones.
	var inbox struct {
		InputRequests struct {
			Edges []struct {
				Node struct{ ID, State, CreatedAt string }
			}
		}
	}
	s.must(t, `{ inputRequests { edges { node { id state createdAt } } } }`, nil, &inbox)
	if e := inbox.InputRequests.Edges; len(e) != 1 || e[0].Node.ID != r.ID || e[0].Node.State != "PENDING" || e[0].Node.CreatedAt == "" {
		t.Fatalf("inputRequests with no state: %+v", inbox)
	}
	// Its cursors page; anything else is a bad cursor.
	var next struct {
		InputRequests struct{ Edges []struct{ Cursor string } }
	}
	s.must(t, `query($a: String) { inputRequests(first: 1, after: $a) { edges { cursor } } }`, map[string]any{"a": r.ID}, &next)
	if len(next.InputRequests.Edges) != 0 {
		t.Fatalf("after the only request: %+v", next)
	}
	for _, bad := range []string{"garbage", strings.ToUpper(r.ID), "urn:uuid:" + r.ID} {
		s.mustFail(t, `query($a: String) { inputRequests(after: $a) { edges { cursor } } }`, map[string]any{"a": bad}, "BAD_USER_INPUT", "INVALID_ARGUMENT")
	}
	s.must(t, `mutation($r: ID!) { answerRequest(requestId: $r, answer: "blue", comment: "bright") { request { id } } }`,
		map[string]any{"r": r.ID}, nil)
	s.waitLine(t, id, "choice=blue")

	// The messages, as JSON lines, in the order sent, each with every field.
	var lines []map[string]json.RawMessage
	for _, l := range s.outputLines(t, id) {
		var m map[string]json.RawMessage
		if json.Unmarshal([]byte(l), &m) == nil {
			lines = append(lines, m)
		}
	}
	if len(lines) != 3 {
		t.Fatalf("pod messages printed %d JSON lines: %q", len(lines), s.outputLines(t, id))
	}
	for i, want := range []struct{ text, data string }{{"plain", "null"}, {"with data", `{"k":1}`}, {"third", "null"}} {
		m := lines[i]
		if got := sortedKeys(m); !slices.Equal(got, []string{"data", "id", "sentAt", "sentBy", "text"}) {
			t.Errorf("line %d has fields %v", i, got)
		}
		if string(m["text"]) != `"`+want.text+`"` || string(m["data"]) != want.data {
			t.Errorf("line %d: text %s data %s, want %q %s", i, m["text"], m["data"], want.text, want.data)
		}
	}

	// The events' data carry the contract's fields.
	eventually(t, 30*time.Second, func() string {
		if n := len(s.events(t, id, "message_delivered")); n != 3 {
			return fmt.Sprintf("%d message_delivered", n)
		}
		return ""
	})
	msgs := s.events(t, id, "message_sent")
	if len(msgs) != 3 {
		t.Fatalf("%d message_sent", len(msgs))
	}
	for _, e := range msgs {
		if got := keysOf(t, e.Data); !slices.Equal(got, []string{"data", "messageId", "text"}) {
			t.Errorf("message_sent data %s: fields %v, want messageId, text, data", e.Data, got)
		}
	}
	if dataField[string](t, msgs[0], "messageId") != plain || string(dataField[json.RawMessage](t, msgs[0], "data")) != "null" ||
		dataField[string](t, msgs[1], "messageId") != withData || dataField[map[string]int](t, msgs[1], "data")["k"] != 1 {
		t.Errorf("message_sent events: %s / %s", msgs[0].Data, msgs[1].Data)
	}
	var delivered []string
	for _, e := range s.events(t, id, "message_delivered") {
		if got := keysOf(t, e.Data); !slices.Contains(got, "messageId") {
			t.Errorf("message_delivered data %s has no messageId", e.Data)
		}
		delivered = append(delivered, dataField[string](t, e, "messageId"))
	}
	if delivered[0] != plain || delivered[1] != withData {
		t.Errorf("delivered in the order %v, want %s then %s first", delivered, plain, withData)
	}
	req := s.events(t, id, "input_requested")
	if len(req) != 1 {
		t.Fatalf("%d input_requested", len(req))
	}
	for _, k := range []string{"requestId", "kind", "prompt", "options", "expiresAt"} {
		if !slices.Contains(keysOf(t, req[0].Data), k) {
			t.Errorf("input_requested data %s has no %s", req[0].Data, k)
		}
	}
	if dataField[string](t, req[0], "requestId") != r.ID || dataField[string](t, req[0], "kind") != "CHOICE" || dataField[string](t, req[0], "prompt") != "Colour?" {
		t.Errorf("input_requested data %s", req[0].Data)
	}
	if ans := s.events(t, id, "input_answered"); len(ans) != 1 || dataField[string](t, ans[0], "requestId") != r.ID || dataField[string](t, ans[0], "answer") != "blue" {
		t.Errorf("input_answered: %+v", ans)
	}

	// Task.messages pages backwards too.
	var page struct {
		Task struct {
			Messages struct {
				TotalCount int
				Edges      []struct {
					Cursor string
					Node   struct{ Text string }
				}
				PageInfo struct{ HasPreviousPage bool }
			}
		}
	}
	s.must(t, `query($id: ID!) { task(id: $id) { messages(last: 2) { totalCount edges { cursor node { text } } pageInfo { hasPreviousPage } } } }`,
		map[string]any{"id": id}, &page)
	m := page.Task.Messages
	if m.TotalCount != 3 || len(m.Edges) != 2 || m.Edges[0].Node.Text != "with data" || m.Edges[1].Node.Text != "third" || !m.PageInfo.HasPreviousPage {
		t.Fatalf("messages(last: 2): %+v", m)
	}
	s.must(t, `query($id: ID!, $b: String) { task(id: $id) { messages(last: 2, before: $b) { totalCount edges { cursor node { text } } pageInfo { hasPreviousPage } } } }`,
		map[string]any{"id": id, "b": m.Edges[0].Cursor}, &page)
	if m := page.Task.Messages; len(m.Edges) != 1 || m.Edges[0].Node.Text != "plain" || m.PageInfo.HasPreviousPage {
		t.Fatalf("messages(last: 2, before): %+v", m)
	}
	// Sizes are 1 to 1000, as on every connection.
	for _, size := range []string{"first: 0", "last: 0", "first: 1001", "first: -1"} {
		s.mustFail(t, `query($id: ID!) { task(id: $id) { messages(`+size+`) { totalCount } } }`, map[string]any{"id": id}, "BAD_USER_INPUT", "INVALID_ARGUMENT")
	}
}

// `ipa pod ask --approval` waits in an exec pod while its server is killed
// -9; the next server reattaches the pod, takes the answer, and the same
// command exits 0 (and a rejected one 1).
func TestExecPodAskSurvivesTheServersKill(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	script := `"$IPA_BIN" pod ask --approval "Ship it?"; echo "exit=$?"`
	run := func(title string) string {
		return s.createTask(t, map[string]any{"title": title, "runtime": "exec", "autoStart": true,
			"restartPolicy": map[string]any{"autoRestart": false},
			"runtimeConfig": map[string]any{"command": []string{"sh", "-c", script}, "env": tagEnv(h)}})
	}
	yes, no := run("approved across"), run("rejected across")
	reqs := map[string]string{yes: s.waitPending(t, yes).ID, no: s.waitPending(t, no).ID}
	pids := map[string]int{yes: s.task(t, yes).Pod.PID, no: s.task(t, no).Pod.PID}

	s.crash(t)
	s = h.start()
	eventually(t, 60*time.Second, func() string {
		for id := range reqs {
			if len(s.events(t, id, "pod_reattached")) == 0 {
				return "not reattached: " + id
			}
		}
		return ""
	})
	for id, approve := range map[string]bool{yes: true, no: false} {
		s.must(t, `mutation($r: ID!, $y: Boolean!) { answerRequest(requestId: $r, approve: $y) { request { id } } }`,
			map[string]any{"r": reqs[id], "y": approve}, nil)
	}
	for id, want := range map[string]string{yes: "exit=0", no: "exit=1"} {
		if got := s.waitLine(t, id, "exit="); got != want {
			t.Errorf("task %s: %q, want %q (output %q)", id, got, want, s.outputLines(t, id))
		}
		if n := len(s.events(t, id, "input_requested")); n != 1 {
			t.Errorf("task %s: %d input_requested", id, n)
		}
		started := s.events(t, id, "pod_started")
		if len(started) != 1 || dataField[int](t, started[0], "pid") != pids[id] {
			t.Errorf("task %s: the pod was started again: %+v", id, started)
		}
	}
	if strings.Contains(s.log.String(), "panic") {
		t.Fatalf("server log:\n%s", s.logTail(40))
	}
}
