package httpserver_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// TestTextIsRefusedNeverAltered: text that is not valid UTF-8, a lone
// surrogate escape (which decoding would turn into U+FFFD unseen) and
// control characters in single-line fields are refused with
// BAD_USER_INPUT/INVALID_TEXT, on every transport; nothing is created.
// Descriptions keep tabs and newlines, and good text round-trips unchanged.
func TestTextIsRefusedNeverAltered(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		c := b.anon()
		open := c.CreateTitled(t, "open")
		requireNothingMade := func(t *testing.T, n int, head int64) {
			t.Helper()
			require.Equal(t, n, c.Count(t, nil))
			require.Equal(t, head, b.HeadPosition(t))
		}
		invalidText := func(t *testing.T, r *gqlResponse, field string) {
			t.Helper()
			require.Lenf(t, r.Errors, 1, "%s", r.Raw)
			apptest.RequireError(t, r.Errors[0], ipa.EINVALID, ipa.ReasonInvalidText)
			if field != "" {
				require.Contains(t, r.Errors[0].Message, field)
			}
		}

		t.Run("RawBody", func(t *testing.T) {
			mutation := `mutation($in: CreateTaskInput!) { createTask(input: $in) { task { id } } }`
			for name, title := range map[string]string{
				"InvalidByte":      "\"bad \xff byte\"",
				"Truncated":        "\"bad \xc3\"",
				"EncodedSurrogate": "\"\xed\xa0\x80\"",
				"LoneHigh":         `"\ud800"`,
				"LoneLow":          `"x\udc00y"`,
				"Reversed":         `"\ude00\ud83d"`,
			} {
				t.Run(name, func(t *testing.T) {
					n, head := c.Count(t, nil), b.HeadPosition(t)
					body := `{"query": "` + strings.ReplaceAll(mutation, `"`, `\"`) + `", "variables": {"in": {"title": ` + title + `}}}`
					r := c.Do(t, request{Body: []byte(body)})
					require.Equal(t, http.StatusBadRequest, r.Status)
					invalidText(t, r, "")
					requireNothingMade(t, n, head)
				})
			}
		})

		t.Run("GraphQLLiteral", func(t *testing.T) {
			n, head := c.Count(t, nil), b.HeadPosition(t)
			for _, q := range []string{
				`mutation { createTask(input: {title: "a \ud800 b"}) { task { id } } }`,
				`mutation { createTask(input: {title: "ok", labels: {team: "\udfff"}}) { task { id } } }`,
			} {
				invalidText(t, c.GQL(t, q, nil), "")
				// Over GET too (a query, refused the same way).
				r := c.Do(t, request{Method: http.MethodGet, Query: `{ tasks(filter: {titleContains: "\ud800"}) { totalCount } }`})
				invalidText(t, r, "")
			}
			requireNothingMade(t, n, head)
		})

		t.Run("GETParameters", func(t *testing.T) {
			for _, q := range []string{
				"query=" + url.QueryEscape("{ tasks(filter: {titleContains: \"\xff\"}) { totalCount } }"),
				"query=" + url.QueryEscape(`query($s: String) { tasks(filter: {titleContains: $s}) { totalCount } }`) +
					"&variables=" + url.QueryEscape(`{"s": "\ud800"}`),
			} {
				req, err := http.NewRequest(http.MethodGet, b.URL+"/graphql?"+q, nil)
				require.NoError(t, err)
				resp, err := b.Srv.Client().Do(req)
				require.NoError(t, err)
				raw := readAll(t, resp)
				require.Equal(t, http.StatusBadRequest, resp.StatusCode, raw)
				require.Contains(t, raw, ipa.ReasonInvalidText)
			}
		})

		t.Run("ControlCharacters", func(t *testing.T) {
			for name, tc := range map[string]struct {
				query string
				vars  map[string]any
				field string
			}{
				"TitleESC":       {apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "red \x1b[31m alert"}}, "title"},
				"TitleBEL":       {apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "ring\a"}}, "title"},
				"TitleSOH":       {apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "\x01"}}, "title"},
				"TitleTabInside": {apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "a\tb"}}, "title"},
				"TitleNewline":   {apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "two\nlines"}}, "title"},
				"TitleC1":        {apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "c1\u009b"}}, "title"},
				"DescriptionESC": {apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "t", "description": "a\x1b]0;x\x07"}}, "description"},
				"LabelKey":       {apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "t", "labels": map[string]any{"te\x1bam": "x"}}}, "label"},
				"LabelValue":     {apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "t", "labels": map[string]any{"team": "a\x07"}}}, "label"},
				"IdempotencyKey": {apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "t", "idempotencyKey": "k\x1b"}}, "idempotencyKey"},
				"RuntimeName":    {apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "t", "runtime": "demo\x1b"}}, "runtime"},
				"UpdateTitle":    {`mutation($id: ID!, $in: UpdateTaskInput!) { updateTask(taskId: $id, input: $in) { task { id } } }`, map[string]any{"id": open.ID, "in": map[string]any{"title": "x\x07"}}, "title"},
				"UpdateDesc":     {`mutation($id: ID!, $in: UpdateTaskInput!) { updateTask(taskId: $id, input: $in) { task { id } } }`, map[string]any{"id": open.ID, "in": map[string]any{"description": "\x00"}}, "description"},
				"CancelReason":   {`mutation($id: ID!, $r: String!) { cancelTask(taskId: $id, reason: $r) { task { id } } }`, map[string]any{"id": open.ID, "r": "because\x1b[2J"}, "reason"},
				"StopReason":     {`mutation($id: ID!, $r: String) { stopPod(taskId: $id, reason: $r) { task { id } } }`, map[string]any{"id": open.ID, "r": "a\x01"}, "reason"},
				"PhaseNote":      {`mutation($id: ID!, $n: String) { transitionPhase(taskId: $id, to: PLANNING, note: $n) { task { id } } }`, map[string]any{"id": open.ID, "n": "a\nb"}, "note"},
				"WebhookURL":     {`mutation($u: String!) { createWebhookEndpoint(input: {url: $u}) { secret } }`, map[string]any{"u": "https://example.com/\x1b[8m"}, "url"},
				"TokenActor":     {`mutation($a: String!) { createToken(actorId: $a, role: VIEWER) { secret } }`, map[string]any{"a": "eve\x1b[0m"}, "actor id"},
				"MessageESC":     {`mutation($id: ID!, $t: String!) { sendMessage(taskId: $id, text: $t) { message { id } } }`, map[string]any{"id": open.ID, "t": "hi\x1b[2J"}, "text"},
				"MessageC1":      {`mutation($id: ID!, $t: String!) { sendMessage(taskId: $id, text: $t) { message { id } } }`, map[string]any{"id": open.ID, "t": "c1\u009b"}, "text"},
				"AnswerESC":      {`mutation($a: String) { answerRequest(requestId: "00000000-0000-0000-0000-000000000000", answer: $a) { request { id } } }`, map[string]any{"a": "yes\x07"}, "answer"},
				"AnswerComment":  {`mutation($c: String) { answerRequest(requestId: "00000000-0000-0000-0000-000000000000", approve: true, comment: $c) { request { id } } }`, map[string]any{"c": "\x00"}, "comment"},
			} {
				t.Run(name, func(t *testing.T) {
					n, head := c.Count(t, nil), b.HeadPosition(t)
					invalidText(t, c.GQL(t, tc.query, tc.vars), tc.field)
					requireNothingMade(t, n, head)
				})
			}
			// A label that is text but not in the label alphabet keeps its
			// format reason.
			e := c.Fail(t, apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "t", "labels": map[string]any{"team": "a b"}}})
			apptest.RequireError(t, e, ipa.EINVALID, ipa.ReasonInvalidLabels)
		})

		t.Run("GoodTextRoundTrips", func(t *testing.T) {
			desc := "line one\n\tindented\r\nwindows line\n"
			title := "pair \U0001F600, replacement \ufffd as sent, é 日"
			tk := c.Create(t, map[string]any{"title": title, "description": desc})
			require.Equal(t, title, tk.Title)
			require.NotNil(t, tk.Description)
			require.Equal(t, desc, *tk.Description)
			// A message is multi-line text, as a description.
			var sent struct {
				SendMessage struct{ Message struct{ Text string } }
			}
			c.Must(t, `mutation($id: ID!, $t: String!) { sendMessage(taskId: $id, text: $t) { message { text } } }`,
				map[string]any{"id": tk.ID, "t": desc}, &sent)
			require.Equal(t, desc, sent.SendMessage.Message.Text)
			// The same emoji as an escaped pair, in JSON and in GraphQL.
			tk = c.Create(t, map[string]any{"title": "x"})
			var out struct{ CreateTask struct{ Task task } }
			c.Must(t, `mutation { createTask(input: {title: "\ud83d\ude00 \u{1F600}"}) { task { title } } }`, nil, &out)
			require.Equal(t, "\U0001F600 \U0001F600", out.CreateTask.Task.Title)
			r := c.Do(t, request{Body: []byte(`{"query": "mutation($t: String!) { createTask(input: {title: $t}) { task { title } } }", "variables": {"t": "\ud83d\ude00"}}`)})
			require.Emptyf(t, r.Errors, "%s", r.Raw)
			require.Contains(t, string(r.Data), "\U0001F600")
		})

		t.Run("WebSocket", func(t *testing.T) {
			ws := b.dialWS(t, "")
			n, head := c.Count(t, nil), b.HeadPosition(t)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			raw := `{"id":"bad","type":"subscribe","payload":{"query":"mutation($t: String!) { createTask(input: {title: $t}) { task { id } } }","variables":{"t":"\ud800"}}}`
			require.NoError(t, ws.conn.Write(ctx, websocket.MessageText, []byte(raw)))
			m := <-ws.msgs
			require.Equal(t, "error", m.Type)
			require.Equal(t, "bad", m.ID)
			var errs []gqlError
			require.NoError(t, json.Unmarshal(m.Payload, &errs))
			require.Len(t, errs, 1)
			apptest.RequireError(t, errs[0], ipa.EINVALID, ipa.ReasonInvalidText)
			// A GraphQL literal with a lone surrogate, and a control
			// character, are refused as over HTTP; the socket stays open.
			require.NoError(t, ws.send("lit", `mutation { createTask(input: {title: "\udc00"}) { task { id } } }`, nil))
			r := ws.next("lit")
			require.Len(t, r.Errors, 1)
			apptest.RequireError(t, r.Errors[0], ipa.EINVALID, ipa.ReasonInvalidText)
			require.NoError(t, ws.send("esc", apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "\x1b[31m"}}))
			r = ws.next("esc")
			require.Len(t, r.Errors, 1)
			apptest.RequireError(t, r.Errors[0], ipa.EINVALID, ipa.ReasonInvalidText)
			requireNothingMade(t, n, head)
			require.NoError(t, wsjson.Write(ctx, ws.conn, wsMsg{ID: "q", Type: "subscribe", Payload: []byte(`{"query":"{ viewer { id } }"}`)}))
			require.Contains(t, string(ws.next("q").Data), "local")
		})

		t.Run("SSE", func(t *testing.T) {
			body := "{\"query\": \"subscription { taskChanged { id } }\", \"variables\": {\"x\": \"\xff\"}}"
			req, err := http.NewRequest(http.MethodPost, b.URL+"/graphql", strings.NewReader(body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "text/event-stream")
			resp, err := b.Srv.Client().Do(req)
			require.NoError(t, err)
			raw := readAll(t, resp)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, raw)
			require.Contains(t, raw, ipa.ReasonInvalidText)
		})
	})
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
