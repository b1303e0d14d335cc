package httpserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// legacyWS is one subscription over the legacy graphql-ws subprotocol.
type legacyWS struct {
	conn *websocket.Conn
	msgs chan wsMsg // "data" messages; closed when the connection ends
	err  error
}

func (b *bundle) dialLegacy(t *testing.T, token, query string) *legacyWS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(b.URL, "http")+"/graphql",
		&websocket.DialOptions{Subprotocols: []string{"graphql-ws"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.CloseNow() })
	init, _ := json.Marshal(map[string]any{"Authorization": "Bearer " + token})
	require.NoError(t, wsjson.Write(ctx, conn, wsMsg{Type: "connection_init", Payload: init}))
	var ack wsMsg
	require.NoError(t, wsjson.Read(ctx, conn, &ack))
	require.Equal(t, "connection_ack", ack.Type)
	payload, _ := json.Marshal(map[string]any{"query": query})
	require.NoError(t, wsjson.Write(ctx, conn, wsMsg{ID: "1", Type: "start", Payload: payload}))
	l := &legacyWS{conn: conn, msgs: make(chan wsMsg, 1024)}
	go func() {
		defer close(l.msgs)
		for {
			var m wsMsg
			if err := wsjson.Read(context.Background(), conn, &m); err != nil {
				l.err = err
				return
			}
			if m.Type == "data" {
				l.msgs <- m
			}
		}
	}()
	return l
}

// data returns the next result's data.
func (l *legacyWS) data(t *testing.T) string {
	t.Helper()
	select {
	case m, ok := <-l.msgs:
		require.Truef(t, ok, "connection ended: %v", l.err)
		var r wsResult
		require.NoError(t, json.Unmarshal(m.Payload, &r))
		require.Empty(t, r.Errors)
		return string(r.Data)
	case <-time.After(10 * time.Second):
		t.Fatal("no data on the legacy socket")
	}
	return ""
}

// sseData returns the data of the next SSE event.
func sseData(t *testing.T, s *sseStream) string {
	t.Helper()
	var r wsResult
	require.NoError(t, json.Unmarshal([]byte(s.first(t)), &r))
	require.Empty(t, r.Errors)
	return string(r.Data)
}

// waitFor polls cond until it holds, failing after a long while (a hang
// detector, not a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Identical subscriptions of one role share one execution per event, across
// both WebSocket subprotocols and SSE: every member gets the same bytes;
// another role is its own cohort. A member subscribing later from the start
// still gets every event once (its own catch-up). Revoking the viewers'
// token closes its members (4403, end of SSE) and they leave the cohort; the
// admin's subscription goes on.
func TestCohorts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		cohorts := b.App.Cohorts
		_, adminSecret := b.Mint(t, "ada", ipa.RoleAdmin)
		viewerTok, viewerSecret := b.Mint(t, "vera", ipa.RoleViewer)
		admin := b.as(adminSecret)
		tk := admin.CreateTitled(t, "cohort")
		live := fmt.Sprintf(`subscription { taskEvents(taskId: %q) { id version type occurredAt } }`, tk.ID)

		ws1 := b.dialWS(t, viewerSecret)
		require.NoError(t, ws1.send("a", live, nil))
		ws2 := b.dialWS(t, viewerSecret)
		require.NoError(t, ws2.send("b", live, nil))
		legacy := b.dialLegacy(t, viewerSecret, live)
		sse := b.openSSE(t, viewerSecret, live)
		wsAdmin := b.dialWS(t, adminSecret)
		require.NoError(t, wsAdmin.send("c", live, nil))
		waitFor(t, "five members in two cohorts", func() bool { return cohorts.Members() == 5 && cohorts.Count() == 2 })

		executed0, shared0 := cohorts.Stats()
		const moves = 5
		phases := []string{"PLANNING", "DEVELOPMENT", "PLANNING", "DEVELOPMENT", "REVIEW"}
		for i := range moves {
			admin.Must(t, moveMutation, map[string]any{"id": tk.ID, "to": phases[i]}, nil)
			want := string(ws1.next("a").Data)
			require.Contains(t, want, fmt.Sprintf(`"version":%d`, i+2))
			require.Equal(t, want, string(ws2.next("b").Data))
			require.Equal(t, want, legacy.data(t))
			require.Equal(t, want, sseData(t, sse))
			require.Equal(t, want, string(wsAdmin.next("c").Data))
		}
		executed, shared := cohorts.Stats()
		require.Equal(t, uint64(2*moves), executed-executed0, "one execution per event per cohort")
		require.Equal(t, uint64(3*moves), shared-shared0, "the other viewers got the shared result")

		// From the start, one member after the other: the later one joins
		// the cohort mid-way and still gets versions 1..6 exactly once.
		fromStart := fmt.Sprintf(`subscription { taskEvents(taskId: %q, afterVersion: 0) { id version } }`, tk.ID)
		readAll := func(ws *wsClient, id string) {
			for v := 1; v <= 1+moves; v++ {
				require.Contains(t, string(ws.next(id).Data), fmt.Sprintf(`"version":%d}`, v))
			}
		}
		early := b.dialWS(t, viewerSecret)
		require.NoError(t, early.send("s", fromStart, nil))
		readAll(early, "s")
		late := b.dialWS(t, viewerSecret)
		require.NoError(t, late.send("s", fromStart, nil))
		readAll(late, "s")
		waitFor(t, "seven members", func() bool { return cohorts.Members() == 7 })

		// Revocation: the viewer members are closed and leave.
		admin.Must(t, revokeMutation, map[string]any{"id": viewerTok.ID}, nil)
		for _, ws := range []*wsClient{ws1, ws2, early, late} {
			require.Equal(t, websocket.StatusCode(4403), ws.closeCode(closeWithin))
		}
		sse.requireEnds(t, closeWithin)
		select {
		case <-func() chan struct{} {
			done := make(chan struct{})
			go func() {
				for range legacy.msgs {
				}
				close(done)
			}()
			return done
		}():
			require.Equal(t, websocket.StatusCode(4403), websocket.CloseStatus(legacy.err))
		case <-time.After(closeWithin):
			t.Fatal("the legacy socket was not closed")
		}
		waitFor(t, "only the admin left", func() bool { return cohorts.Members() == 1 && cohorts.Count() == 1 })
		admin.Must(t, moveMutation, map[string]any{"id": tk.ID, "to": "DEVELOPMENT"}, nil)
		require.Contains(t, string(wsAdmin.next("c").Data), `"version":7`)
	})
}

// Cohorts cover every live feed, not only taskEvents: two identical
// subscriptions to events, taskChanged and eventsStream (on one socket each
// side) execute once per value and get the same bytes.
func TestCohortsCoverEveryFeed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		cohorts := b.App.Cohorts
		_, adminSecret := b.Mint(t, "ada", ipa.RoleAdmin)
		admin := b.as(adminSecret)
		tk := admin.CreateTitled(t, "feeds")
		feeds := map[string]string{
			"ev": `subscription { events(types: ["phase_changed"]) { id type data } }`,
			"tc": `subscription { taskChanged { id version phase } }`,
			"st": `subscription { eventsStream(types: ["phase_changed"], batchSize: 10) { id type } }`,
		}
		one, two := b.dialWS(t, adminSecret), b.dialWS(t, adminSecret)
		for id, q := range feeds {
			require.NoError(t, one.send(id, q, nil))
			require.NoError(t, two.send(id, q, nil))
		}
		waitFor(t, "six members in three cohorts", func() bool { return cohorts.Members() == 6 && cohorts.Count() == 3 })

		executed0, shared0 := cohorts.Stats()
		admin.Must(t, moveMutation, map[string]any{"id": tk.ID, "to": "PLANNING"}, nil)
		for id := range feeds {
			got := string(one.next(id).Data)
			require.NotEmpty(t, got)
			require.Equal(t, got, string(two.next(id).Data), id)
		}
		executed, shared := cohorts.Stats()
		require.Equal(t, uint64(3), executed-executed0, "one execution per feed")
		require.Equal(t, uint64(3), shared-shared0, "the second subscriber of each feed got the shared result")
	})
}
