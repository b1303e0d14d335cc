package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/ipa-dev/ipa/internal/pgtest"
)

// closeWithin is the generous bound for "closed within 1 second".
const closeWithin = 4 * time.Second

// mintCLI creates a token with `ipa token create` and returns its id and
// secret.
func (h *home) mintCLI(t *testing.T, actor, role string) (id, secret string) {
	t.Helper()
	out, code := h.runIPA(t, "token", "create", "--actor", actor, "--role", role)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if code != 0 || len(lines) < 2 {
		t.Fatalf("token create: exit %d, %q", code, out)
	}
	return strings.Fields(lines[0])[1], lines[len(lines)-1]
}

// postAs sends one GraphQL request with token ("" sends none) and returns
// the HTTP status and errors.
func (s *server) postAs(t *testing.T, token, query string, vars map[string]any) (int, []gqlError) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequest(http.MethodPost, s.url+"/graphql", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Errors []gqlError }
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.Errors
}

// openSocket opens a graphql-transport-ws connection to s authenticated with
// token ("" for none), starts a subscription to every event, and returns a
// channel that yields the connection's close code when it ends.
func openSocket(t *testing.T, s *server, token string) <-chan websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, strings.Replace(s.url, "http", "ws", 1)+"/graphql",
		&websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.CloseNow() })
	init := map[string]any{}
	if token != "" {
		init["Authorization"] = "Bearer " + token
	}
	payload, _ := json.Marshal(init)
	if err := wsjson.Write(ctx, conn, wsMessage{Type: "connection_init", Payload: payload}); err != nil {
		t.Fatal(err)
	}
	var ack wsMessage
	if err := wsjson.Read(ctx, conn, &ack); err != nil || ack.Type != "connection_ack" {
		t.Fatalf("connection_ack: %v %+v", err, ack)
	}
	sub, _ := json.Marshal(map[string]any{"query": `subscription { events(afterPosition: "0") { type } }`})
	if err := wsjson.Write(ctx, conn, wsMessage{ID: "1", Type: "subscribe", Payload: sub}); err != nil {
		t.Fatal(err)
	}
	closed := make(chan websocket.StatusCode, 1)
	go func() {
		for {
			var m wsMessage
			if err := wsjson.Read(context.Background(), conn, &m); err != nil {
				closed <- websocket.CloseStatus(err)
				return
			}
			if m.Type == "ping" {
				_ = wsjson.Write(context.Background(), conn, wsMessage{Type: "pong"})
			}
		}
	}()
	return closed
}

func requireClosed(t *testing.T, closed <-chan websocket.StatusCode, want websocket.StatusCode) {
	t.Helper()
	select {
	case got := <-closed:
		if got != want {
			t.Fatalf("socket closed with %d, want %d", got, want)
		}
	case <-time.After(closeWithin):
		t.Fatalf("socket not closed within %s", closeWithin)
	}
}

// TestCrossInstanceRevocation runs two servers on one PostgreSQL database:
// a token revoked through one closes its sockets on the other, and the
// first token minted through one closes the other's anonymous sockets.
func TestCrossInstanceRevocation(t *testing.T) {
	t.Run("Revoke", func(t *testing.T) {
		url := pgtest.Start(t)
		a, b := newHome(t), newHome(t)
		a.db, b.db = url, url
		_, adminSecret := a.mintCLI(t, "ada", "admin")
		opID, opSecret := a.mintCLI(t, "oscar", "operator")
		sa, sb := a.start(), b.start()

		closed := openSocket(t, sa, opSecret)
		time.Sleep(200 * time.Millisecond) // let the subscription start
		if status, errs := sb.postAs(t, adminSecret, `mutation($id: ID!) { revokeToken(id: $id) { token { id } } }`,
			map[string]any{"id": opID}); status != http.StatusOK || len(errs) > 0 {
			t.Fatalf("revoke on B: %d %v", status, errs)
		}
		requireClosed(t, closed, 4403)
		if status, _ := sa.postAs(t, opSecret, `{ viewer { id } }`, nil); status != http.StatusUnauthorized {
			t.Fatalf("the revoked token on A got HTTP %d", status)
		}
	})
	t.Run("FirstToken", func(t *testing.T) {
		url := pgtest.Start(t)
		a, b := newHome(t), newHome(t)
		a.db, b.db = url, url
		sa, sb := a.start(), b.start()

		closed := openSocket(t, sa, "")
		time.Sleep(200 * time.Millisecond)
		if status, errs := sb.postAs(t, "", `mutation { createToken(actorId: "ada", role: ADMIN) { secret } }`, nil); status != http.StatusOK || len(errs) > 0 {
			t.Fatalf("createToken on B: %d %v", status, errs)
		}
		requireClosed(t, closed, 4403)
		if status, _ := sa.postAs(t, "", `{ viewer { id } }`, nil); status != http.StatusUnauthorized {
			t.Fatalf("an anonymous request on A after the first token got HTTP %d", status)
		}
	})
}

// TestTokenResetLocal: revoking every token leaves the anonymous door shut
// (also for a server started afterwards); `ipa token reset-local` reopens
// it, but only once no token is active. A revocation by the CLI closes the
// running server's sockets.
func TestTokenResetLocal(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	id, secret := h.mintCLI(t, "ada", "admin")
	if out, code := h.runIPA(t, "token", "reset-local"); code == 0 {
		t.Fatalf("reset-local with an active token: exit 0, %q", out)
	}
	s := h.start()
	closed := openSocket(t, s, secret)
	if out, code := h.runIPA(t, "token", "revoke", id); code != 0 {
		t.Fatalf("revoke: exit %d, %q", code, out)
	}
	requireClosed(t, closed, 4403)
	if status, _ := s.postAs(t, "", `{ viewer { id } }`, nil); status != http.StatusUnauthorized {
		t.Fatalf("anonymous after the last token was revoked: HTTP %d", status)
	}
	s.stop(t, 15*time.Second)
	s = h.start()
	if status, _ := s.postAs(t, "", `{ viewer { id } }`, nil); status != http.StatusUnauthorized {
		t.Fatalf("anonymous after a restart: HTTP %d", status)
	}

	if out, code := h.runIPA(t, "token", "reset-local"); code != 0 {
		t.Fatalf("reset-local: exit %d, %q", code, out)
	}
	deadline := time.Now().Add(closeWithin)
	for {
		status, errs := s.postAs(t, "", `{ viewer { id } }`, nil)
		if status == http.StatusOK && len(errs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the running server never reopened its door: HTTP %d %v", status, errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var v struct{ Viewer struct{ ID string } }
	s.must(t, `{ viewer { id } }`, nil, &v)
	if v.Viewer.ID != "local" {
		t.Fatalf("viewer after reset-local: %q", v.Viewer.ID)
	}
}

// TestShutdownClosesSockets: SIGTERM closes the open subscriptions with
// 1001 (going away) before the server exits, which it does promptly and
// cleanly with them open.
func TestShutdownClosesSockets(t *testing.T) {
	t.Parallel()
	s := newHome(t).start()
	closed := []<-chan websocket.StatusCode{openSocket(t, s, ""), openSocket(t, s, "")}
	time.Sleep(200 * time.Millisecond) // let the subscriptions start
	s.kill(syscall.SIGTERM)
	for _, c := range closed {
		requireClosed(t, c, websocket.StatusGoingAway)
	}
	s.stop(t, 15*time.Second)
}
