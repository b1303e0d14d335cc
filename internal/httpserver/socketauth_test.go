package httpserver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// closeWithin is the generous bound for "closed within 1 second".
const closeWithin = 4 * time.Second

type wsMsg struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// wsClient is one graphql-transport-ws connection over a real socket.
type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
	msgs chan wsMsg // closed when the connection ends
	err  error      // why it ended; read after msgs is closed

	pending []wsMsg // read by next while waiting for another operation
}

// dialWSRaw opens a socket and sends connection_init with token ("" sends
// none), returning the connection before any reply is read.
func (b *bundle) dialWSRaw(t *testing.T, token string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(b.URL, "http")+"/graphql",
		&websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.CloseNow() })
	init := map[string]any{}
	if token != "" {
		init["Authorization"] = "Bearer " + token
	}
	payload, err := json.Marshal(init)
	require.NoError(t, err)
	require.NoError(t, wsjson.Write(ctx, conn, wsMsg{Type: "connection_init", Payload: payload}))
	return conn
}

// dialWS opens an acknowledged connection authenticated with token.
func (b *bundle) dialWS(t *testing.T, token string) *wsClient {
	t.Helper()
	conn := b.dialWSRaw(t, token)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ack wsMsg
	require.NoError(t, wsjson.Read(ctx, conn, &ack))
	require.Equal(t, "connection_ack", ack.Type)
	c := &wsClient{t: t, conn: conn, msgs: make(chan wsMsg, 1024)}
	go c.read()
	return c
}

// read runs until the connection ends; the test's cleanup closes it.
func (c *wsClient) read() {
	defer close(c.msgs)
	for {
		var m wsMsg
		if err := wsjson.Read(context.Background(), c.conn, &m); err != nil {
			c.err = err
			return
		}
		if m.Type == "ping" {
			_ = wsjson.Write(context.Background(), c.conn, wsMsg{Type: "pong"})
			continue
		}
		c.msgs <- m
	}
}

// send starts operation id; it returns the write error, if any.
func (c *wsClient) send(id, query string, vars map[string]any) error {
	payload, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	require.NoError(c.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return wsjson.Write(ctx, c.conn, wsMsg{ID: id, Type: "subscribe", Payload: payload})
}

type wsResult struct {
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

// next returns the next result of operation id, skipping other messages.
func (c *wsClient) next(id string) wsResult {
	c.t.Helper()
	decode := func(m wsMsg) wsResult {
		require.Equalf(c.t, "next", m.Type, "operation %s: %s %s", id, m.Type, m.Payload)
		var r wsResult
		require.NoError(c.t, json.Unmarshal(m.Payload, &r))
		return r
	}
	for i, m := range c.pending {
		if m.ID == id {
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			return decode(m)
		}
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-c.msgs:
			require.Truef(c.t, ok, "connection ended while waiting for %s: %v", id, c.err)
			if m.ID != id {
				if m.Type == "next" {
					c.pending = append(c.pending, m)
				}
				continue
			}
			return decode(m)
		case <-timeout:
			c.t.Fatalf("no result for operation %s", id)
		}
	}
}

// closeCode waits for the connection to end and returns its close code;
// every result it delivers on the way must be an error.
func (c *wsClient) closeCode(within time.Duration) websocket.StatusCode {
	c.t.Helper()
	timeout := time.After(within)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				return websocket.CloseStatus(c.err)
			}
			if m.Type == "next" {
				var r wsResult
				require.NoError(c.t, json.Unmarshal(m.Payload, &r))
				require.NotEmptyf(c.t, r.Errors, "a result after the credential ended: %s", m.Payload)
			}
		case <-timeout:
			c.t.Fatalf("the connection was not closed within %s", within)
		}
	}
}

// sseStream is one Server-Sent Events subscription over a real socket.
type sseStream struct {
	events chan string // "data:" lines; closed at the end of the body
}

// openSSE starts a subscription as an SSE stream, sending token when set.
func (b *bundle) openSSE(t *testing.T, token, query string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	body, err := json.Marshal(map[string]any{"query": query})
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.URL+"/graphql", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := b.Srv.Client().Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	s := &sseStream{events: make(chan string, 1024)}
	go func() {
		defer resp.Body.Close()
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				s.events <- line
			}
		}
	}()
	return s
}

// first waits for the stream's first event.
func (s *sseStream) first(t *testing.T) string {
	t.Helper()
	select {
	case e, ok := <-s.events:
		require.True(t, ok, "the stream ended before its first event")
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no first event on the stream")
	}
	return ""
}

// requireEnds waits for the end of the stream.
func (s *sseStream) requireEnds(t *testing.T, within time.Duration) {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("the stream did not end within %s", within)
		}
	}
}

const (
	allEvents      = `subscription { events(afterPosition: "0") { type taskId } }`
	revokeMutation = `mutation($id: ID!) { revokeToken(id: $id) { token { id revokedAt } } }`
)

// TestRevokeClosesSockets: revoking a token over the API closes its
// WebSocket connections with 4403 and ends its SSE streams at once; nothing
// more runs on them, and other tokens' connections stay open.
func TestRevokeClosesSockets(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		_, adminSecret := b.Mint(t, "ada", ipa.RoleAdmin)
		opTok, opSecret := b.Mint(t, "oscar", ipa.RoleOperator)
		_, viewerSecret := b.Mint(t, "vera", ipa.RoleViewer)
		admin := b.as(adminSecret)

		ws := b.dialWS(t, opSecret)
		require.NoError(t, ws.send("feed", allEvents, nil))
		require.NoError(t, ws.send("make", apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "over the socket"}}))
		made := ws.next("make")
		require.Emptyf(t, made.Errors, "%+v", made.Errors)
		require.Contains(t, string(ws.next("feed").Data), "task_created")
		sse := b.openSSE(t, opSecret, allEvents)
		require.Contains(t, sse.first(t), "task_created")
		bystander := b.dialWS(t, viewerSecret)
		require.NoError(t, bystander.send("feed", allEvents, nil))
		bystander.next("feed")
		n := admin.Count(t, nil)

		admin.Must(t, revokeMutation, map[string]any{"id": opTok.ID}, nil)
		require.Equal(t, websocket.StatusCode(4403), ws.closeCode(closeWithin))
		sse.requireEnds(t, closeWithin)

		// The socket is gone: a mutation cannot even be sent, and none ran.
		require.Error(t, ws.send("again", apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "after revoke"}}))
		require.Equal(t, n, admin.Count(t, nil))

		// Another token's connection is untouched.
		require.NoError(t, bystander.send("q", `{ viewer { id } }`, nil))
		require.Contains(t, string(bystander.next("q").Data), "vera")
	})
}

// TestRevokedElsewhereChecksEachOperation: a revocation this server hears
// nothing about (made by another process, as `ipa token revoke` does) stops
// the very next operation on an open socket, and the socket is closed with
// 4403 soon after.
func TestRevokedElsewhereChecksEachOperation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		_, adminSecret := b.Mint(t, "ada", ipa.RoleAdmin)
		opTok, opSecret := b.Mint(t, "oscar", ipa.RoleOperator)
		ws := b.dialWS(t, opSecret)
		require.NoError(t, ws.send("q", `{ viewer { id } }`, nil))
		require.Contains(t, string(ws.next("q").Data), "oscar")
		n := b.as(adminSecret).Count(t, nil)

		other, err := store.Open(context.Background(), b.DBURL, store.Options{})
		require.NoError(t, err)
		defer other.Close()
		require.NoError(t, other.RevokeToken(context.Background(), opTok.ID))

		if ws.send("make", apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "after revoke"}}) == nil {
			select {
			case m, ok := <-ws.msgs:
				if ok && m.Type == "next" {
					var r wsResult
					require.NoError(t, json.Unmarshal(m.Payload, &r))
					require.Lenf(t, r.Errors, 1, "the mutation ran: %s", m.Payload)
					apptest.RequireError(t, r.Errors[0], ipa.EUNAUTHENTICATED, "")
				}
			case <-time.After(closeWithin):
				t.Fatal("no answer to an operation after the revocation")
			}
		}
		require.Equal(t, websocket.StatusCode(4403), ws.closeCode(closeWithin))
		require.Equal(t, n, b.as(adminSecret).Count(t, nil), "a mutation ran on a revoked token")
	})
}

// TestFirstTokenClosesAnonymousSockets: connections opened as the anonymous
// local admin end when the first token is created; the door stays shut.
func TestFirstTokenClosesAnonymousSockets(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		anon := b.anon()
		anon.CreateTitled(t, "made locally")
		ws := b.dialWS(t, "")
		require.NoError(t, ws.send("feed", allEvents, nil))
		require.Contains(t, string(ws.next("feed").Data), "task_created")
		sse := b.openSSE(t, "", allEvents)
		require.Contains(t, sse.first(t), "task_created")

		var made struct{ CreateToken struct{ Secret string } }
		anon.Must(t, `mutation { createToken(actorId: "ada", role: ADMIN) { secret } }`, nil, &made)
		require.Equal(t, websocket.StatusCode(4403), ws.closeCode(closeWithin))
		sse.requireEnds(t, closeWithin)
		apptest.RequireUnauthenticated(t, anon.GQL(t, `{ viewer { id } }`, nil))

		// A new anonymous socket is refused at connection_init.
		conn := b.dialWSRaw(t, "")
		ctx, cancel := context.WithTimeout(context.Background(), closeWithin)
		defer cancel()
		var err error
		for err == nil {
			var m wsMsg
			err = wsjson.Read(ctx, conn, &m)
		}
		require.Equal(t, websocket.StatusCode(4401), websocket.CloseStatus(err))
		require.Equal(t, "ada", b.as(made.CreateToken.Secret).Viewer(t).Viewer.ID)
	})
}

// TestLocalDoorStaysShut: revoking the last token does not reopen the
// anonymous door, not even after a restart; only an explicit reset does,
// and only when no token is active.
func TestLocalDoorStaysShut(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		ctx := context.Background()
		b := setup(t, backend)
		tok, secret := b.Mint(t, "ada", ipa.RoleAdmin)
		b.as(secret).Must(t, revokeMutation, map[string]any{"id": tok.ID}, nil)
		n, err := b.Store.CountActiveTokens(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
		apptest.RequireUnauthenticated(t, b.anon().GQL(t, `{ viewer { id } }`, nil))
		time.Sleep(1100 * time.Millisecond) // past the door cache
		apptest.RequireUnauthenticated(t, b.anon().GQL(t, `{ viewer { id } }`, nil))

		// Restarted on the same database: still shut.
		r := setup(t, backend, apptest.WithDatabase(b.DBURL))
		apptest.RequireUnauthenticated(t, r.anon().GQL(t, `{ viewer { id } }`, nil))

		// The reset refuses while a token is active.
		tok2, _ := r.Mint(t, "bob", ipa.RoleViewer)
		require.Equal(t, ipa.ECONFLICT, ipa.ErrorCode(r.Store.ReopenLocalDoor(ctx)))
		require.NoError(t, r.Store.RevokeToken(ctx, tok2.ID))
		apptest.RequireUnauthenticated(t, r.anon().GQL(t, `{ viewer { id } }`, nil))
		require.NoError(t, r.Store.ReopenLocalDoor(ctx))
		require.Equal(t, "local", r.anon().Viewer(t).Viewer.ID)
		// The other server reads the door again within its cache's second.
		deadline := time.Now().Add(closeWithin)
		for b.anon().GQL(t, `{ viewer { id } }`, nil).Status != http.StatusOK {
			require.True(t, time.Now().Before(deadline), "the other server never saw the door reopen")
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// rawRequest sends a request with the given Host header and returns status
// and decoded GraphQL errors.
func (b *bundle) rawRequest(t *testing.T, host string, header map[string]string, body string) (int, []gqlError) {
	t.Helper()
	method := http.MethodPost
	if body == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, b.URL+"/graphql", strings.NewReader(body))
	require.NoError(t, err)
	req.Host = host
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := b.Srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out struct{ Errors []gqlError }
	if strings.Contains(resp.Header.Get("Content-Type"), "json") {
		require.NoErrorf(t, json.Unmarshal(raw, &out), "%s", raw)
	}
	b.Record(out.Errors)
	return resp.StatusCode, out.Errors
}

// TestHostCheck: while the anonymous door is open, a request naming the
// server by another name (DNS rebinding) is refused with 403 FORBIDDEN and
// runs nothing; loopback names, addresses and --allowed-hosts are served.
func TestHostCheck(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend, apptest.WithAllowedHosts("ipa.internal"))
		_, port, _ := strings.Cut(strings.TrimPrefix(b.URL, "http://"), ":")
		create := `{"query":"mutation { createTask(input: {title: \"rebound\", runtime: \"exec\", runtimeConfig: {command: [\"true\"]}}) { task { id } } }"}`

		for _, host := range []string{"attacker.example", "attacker.example:" + port, "10.0.0.1:" + port, "localhost.attacker.example"} {
			status, errs := b.rawRequest(t, host, map[string]string{"Origin": "http://" + host}, create)
			require.Equalf(t, http.StatusForbidden, status, "Host %q", host)
			require.Lenf(t, errs, 1, "Host %q", host)
			apptest.RequireError(t, errs[0], ipa.EFORBIDDEN, "")
			require.NotEmpty(t, errs[0].Extensions["correlationId"])
		}
		// A WebSocket upgrade is refused the same way, before it upgrades.
		status, errs := b.rawRequest(t, "attacker.example", map[string]string{
			"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
			"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "graphql-transport-ws",
		}, "")
		require.Equal(t, http.StatusForbidden, status)
		apptest.RequireError(t, errs[0], ipa.EFORBIDDEN, "")
		require.Zero(t, b.anon().Count(t, nil), "a refused request created a task")

		for _, host := range []string{"localhost:" + port, "LOCALHOST", "127.0.0.1:" + port, "127.0.0.2", "[::1]:" + port,
			"app.localhost:" + port, "ipa.internal", "IPA.internal:" + port} {
			status, errs := b.rawRequest(t, host, nil, `{"query":"{ viewer { id } }"}`)
			require.Equalf(t, http.StatusOK, status, "Host %q: %+v", host, errs)
			require.Empty(t, errs)
		}

		// Once tokens are required, the Host no longer matters: the token does.
		_, secret := b.Mint(t, "ada", ipa.RoleAdmin)
		status, errs = b.rawRequest(t, "attacker.example", map[string]string{"Authorization": "Bearer " + secret}, `{"query":"{ viewer { id } }"}`)
		require.Equalf(t, http.StatusOK, status, "%+v", errs)
		status, _ = b.rawRequest(t, "attacker.example", nil, `{"query":"{ viewer { id } }"}`)
		require.Equal(t, http.StatusUnauthorized, status)
	})
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// records returns the JSON log records with message msg.
func (s *syncBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &r))
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAuditLog: token creation and revocation, failed authentications and
// closed connections are logged with actor and remote address, never with a
// secret or its hash.
func TestAuditLog(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		logs := &syncBuffer{}
		b := setup(t, backend, apptest.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
		anon := b.anon()
		var made struct {
			CreateToken struct {
				Secret string
				Token  struct{ ID string }
			}
		}
		anon.Must(t, `mutation { createToken(actorId: "ada", role: ADMIN) { secret token { id } } }`, nil, &made)
		admin := b.as(made.CreateToken.Secret)
		var op struct {
			CreateToken struct {
				Secret string
				Token  struct{ ID string }
			}
		}
		admin.Must(t, `mutation { createToken(actorId: "oscar", role: OPERATOR) { secret token { id } } }`, nil, &op)
		ws := b.dialWS(t, op.CreateToken.Secret)
		admin.Must(t, revokeMutation, map[string]any{"id": op.CreateToken.Token.ID}, nil)
		require.Equal(t, websocket.StatusCode(4403), ws.closeCode(closeWithin))
		const wrong = "ipa_not-a-real-secret-but-secret-looking"
		apptest.RequireUnauthenticated(t, b.as(wrong).GQL(t, `{ viewer { id } }`, nil))
		apptest.RequireUnauthenticated(t, b.as(op.CreateToken.Secret).GQL(t, `{ viewer { id } }`, nil))

		fromClient := func(r map[string]any) {
			t.Helper()
			addr, _ := r["remote_addr"].(string)
			require.Truef(t, strings.HasPrefix(addr, "127.0.0.1:"), "remote_addr in %v", r)
		}
		created := logs.records(t, "token created")
		require.Len(t, created, 2)
		require.Equal(t, "local", created[0]["actor"])
		require.Equal(t, "ada", created[0]["for_actor"])
		require.Equal(t, "ada", created[1]["actor"])
		require.Equal(t, op.CreateToken.Token.ID, created[1]["token_id"])
		for _, r := range created {
			fromClient(r)
		}
		revoked := logs.records(t, "token revoked")
		require.Len(t, revoked, 1)
		require.Equal(t, "ada", revoked[0]["actor"])
		require.Equal(t, op.CreateToken.Token.ID, revoked[0]["token_id"])
		fromClient(revoked[0])
		closed := logs.records(t, "connection closed: credential no longer valid")
		require.Len(t, closed, 1)
		require.Equal(t, "oscar", closed[0]["actor"])
		fromClient(closed[0])
		failed := logs.records(t, "authentication failed")
		require.Len(t, failed, 2)
		for _, r := range failed {
			fromClient(r)
		}
		require.Equal(t, "oscar", failed[1]["actor"], "a revoked token's owner is named")
		require.Equal(t, op.CreateToken.Token.ID, failed[1]["token_id"])

		text := logs.String()
		for _, s := range []string{made.CreateToken.Secret, op.CreateToken.Secret, wrong} {
			require.NotContains(t, text, s)
			require.NotContains(t, text, auth.Hash(s))
			require.NotContains(t, text, strings.TrimPrefix(s, "ipa_"))
		}
	})
}
