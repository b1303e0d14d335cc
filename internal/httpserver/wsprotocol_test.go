package httpserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// dialProto opens a socket with the subprotocol and sends nothing.
func (b *bundle) dialProto(t *testing.T, subprotocol string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(b.URL, "http")+"/graphql",
		&websocket.DialOptions{Subprotocols: []string{subprotocol}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.CloseNow() })
	return conn
}

// closeOf reads until the server closes conn and returns the close code.
func closeOf(t *testing.T, conn *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, _, err := conn.Read(ctx); err != nil {
			require.NoError(t, ctx.Err(), "the server did not close the connection")
			return websocket.CloseStatus(err)
		}
	}
}

func writeRaw(t *testing.T, conn *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, conn.Write(ctx, websocket.MessageText, []byte(msg)))
}

func readMsg(t *testing.T, conn *websocket.Conn) wsMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var m wsMsg
	require.NoError(t, wsjson.Read(ctx, conn, &m))
	return m
}

// graphql-transport-ws closes a connection that breaks the protocol with the
// codes the protocol names.
func TestTransportWSRefusals(t *testing.T) {
	b := setup(t, "sqlite")
	_, secret := b.Mint(t, "ada", ipa.RoleAdmin)
	initMsg := fmt.Sprintf(`{"type":"connection_init","payload":{"Authorization":"Bearer %s"}}`, secret)
	cases := []struct {
		name string
		msgs []string
		code websocket.StatusCode
	}{
		{"not JSON", []string{`{nope`}, 4400},
		{"no type", []string{`{"id":"1"}`}, 4400},
		{"unknown type", []string{`{"type":"start","id":"1","payload":{}}`}, 4400},
		{"subscribe before connection_init", []string{`{"type":"subscribe","id":"1","payload":{"query":"{ viewer { id } }"}}`}, 4401},
		{"a second connection_init", []string{initMsg, initMsg}, 4429},
		{"a bad token", []string{`{"type":"connection_init","payload":{"Authorization":"Bearer nope"}}`}, 4401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := b.dialProto(t, "graphql-transport-ws")
			for _, m := range tc.msgs {
				writeRaw(t, conn, m)
			}
			require.Equal(t, tc.code, closeOf(t, conn))
		})
	}

	t.Run("ping is answered with its payload", func(t *testing.T) {
		conn := b.dialProto(t, "graphql-transport-ws")
		writeRaw(t, conn, initMsg)
		require.Equal(t, "connection_ack", readMsg(t, conn).Type)
		writeRaw(t, conn, `{"type":"ping","payload":{"n":7}}`)
		pong := readMsg(t, conn)
		require.Equal(t, "pong", pong.Type)
		require.JSONEq(t, `{"n":7}`, string(pong.Payload))
	})
}

// The older graphql-ws protocol: ka after the ack, data messages, a start
// that replaces a live id, and a complete for an operation the client
// stopped.
func TestGraphQLWSProtocol(t *testing.T) {
	b := setup(t, "sqlite")
	_, secret := b.Mint(t, "ada", ipa.RoleAdmin)
	admin := b.as(secret)
	tk := admin.CreateTitled(t, "legacy")
	conn := b.dialProto(t, "graphql-ws")
	writeRaw(t, conn, fmt.Sprintf(`{"type":"connection_init","payload":{"Authorization":"Bearer %s"}}`, secret))
	require.Equal(t, "connection_ack", readMsg(t, conn).Type)
	require.Equal(t, "ka", readMsg(t, conn).Type)

	q, _ := json.Marshal(map[string]any{"query": fmt.Sprintf(`subscription { taskEvents(taskId: %q) { type version } }`, tk.ID)})
	writeRaw(t, conn, fmt.Sprintf(`{"type":"start","id":"s","payload":%s}`, q))
	waitFor(t, "the subscription in its cohort", func() bool { return b.App.Cohorts.Members() == 1 })
	admin.Must(t, moveMutation, map[string]any{"id": tk.ID, "to": "PLANNING"}, nil)
	m := readMsg(t, conn)
	require.Equal(t, "data", m.Type)
	require.Equal(t, "s", m.ID)
	require.JSONEq(t, `{"data":{"taskEvents":{"type":"phase_changed","version":2}}}`, string(m.Payload))

	// A start reusing a live id replaces the operation: the older one
	// leaves its cohort, and the id gets each event once.
	writeRaw(t, conn, fmt.Sprintf(`{"type":"start","id":"s","payload":%s}`, q))
	time.Sleep(100 * time.Millisecond)
	waitFor(t, "one member again", func() bool { return b.App.Cohorts.Members() == 1 })
	admin.Must(t, moveMutation, map[string]any{"id": tk.ID, "to": "DEVELOPMENT"}, nil)
	m = readMsg(t, conn)
	require.Equal(t, "data", m.Type)
	require.JSONEq(t, `{"data":{"taskEvents":{"type":"phase_changed","version":3}}}`, string(m.Payload))

	writeRaw(t, conn, `{"type":"stop","id":"s"}`)
	m = readMsg(t, conn)
	require.Equal(t, "complete", m.Type)
	require.Equal(t, "s", m.ID)
	waitFor(t, "the cohort empty", func() bool { return b.App.Cohorts.Members() == 0 && b.App.Cohorts.Count() == 0 })

	writeRaw(t, conn, `{"type":"connection_terminate"}`)
	require.Equal(t, websocket.StatusNormalClosure, closeOf(t, conn))
}

// An idle subscription in a live cohort costs no goroutine of its own: one
// cohort of 200 members on one socket runs on the cohort's goroutines, and
// every member gets the event, once.
func TestLiveCohortMembersHaveNoGoroutine(t *testing.T) {
	b := setup(t, "sqlite")
	_, secret := b.Mint(t, "ada", ipa.RoleAdmin)
	admin := b.as(secret)
	tk := admin.CreateTitled(t, "crowd")
	q := fmt.Sprintf(`subscription { taskEvents(taskId: %q) { id version } }`, tk.ID)
	ws := b.dialWS(t, secret)
	settle := func() int {
		runtime.GC()
		time.Sleep(100 * time.Millisecond)
		return runtime.NumGoroutine()
	}
	require.NoError(t, ws.send("first", q, nil))
	waitFor(t, "one member", func() bool { return b.App.Cohorts.Members() == 1 })
	before := settle()
	const members = 200
	for i := range members {
		require.NoError(t, ws.send(fmt.Sprint(i), q, nil))
	}
	waitFor(t, "every member in one cohort", func() bool {
		return b.App.Cohorts.Members() == members+1 && b.App.Cohorts.Count() == 1
	})
	after := settle()
	require.Less(t, after-before, 10, "goroutines for %d more idle members: %d → %d", members, before, after)

	admin.Must(t, moveMutation, map[string]any{"id": tk.ID, "to": "PLANNING"}, nil)
	for i := range members {
		require.JSONEq(t, `{"taskEvents":{"id":"`+eventID(t, admin, tk.ID, 2)+`","version":2}}`, string(ws.next(fmt.Sprint(i)).Data))
	}
	executed, _ := b.App.Cohorts.Stats()
	require.NotZero(t, executed)
}

// eventID is the id of the task's event with the version.
func eventID(t *testing.T, c *client, taskID string, version int) string {
	t.Helper()
	for _, e := range c.Events(t, taskID) {
		if e.Version == version {
			return e.ID
		}
	}
	t.Fatalf("no event %d of %s", version, taskID)
	return ""
}

// A member that joins its cohort further behind than the cohort remembers
// catches up from the store on its own, then rejoins: both members get
// every event from the same cursor, in order, once, from one cohort.
func TestLiveCohortLateMemberCatchesUp(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		_, secret := b.Mint(t, "ada", ipa.RoleAdmin)
		admin := b.as(secret)
		tk := admin.CreateTitled(t, "history")
		q := fmt.Sprintf(`subscription($after: Int) { taskEvents(taskId: %q, afterVersion: $after) { version } }`, tk.ID)
		vars := map[string]any{"after": 1}
		early := b.dialWS(t, secret)
		require.NoError(t, early.send("e", q, vars))
		waitFor(t, "the early member", func() bool { return b.App.Cohorts.Members() == 1 })

		phases := []string{"PLANNING", "DEVELOPMENT"}
		const before = 100 // more than the cohort remembers
		for i := range before {
			admin.Must(t, moveMutation, map[string]any{"id": tk.ID, "to": phases[i%2]}, nil)
		}
		late := b.dialWS(t, secret)
		require.NoError(t, late.send("l", q, vars))
		waitFor(t, "both members in one cohort", func() bool {
			return b.App.Cohorts.Members() == 2 && b.App.Cohorts.Count() == 1
		})
		const after = 5
		for i := range after {
			admin.Must(t, moveMutation, map[string]any{"id": tk.ID, "to": phases[(before+i)%2]}, nil)
		}
		for _, c := range []struct {
			ws *wsClient
			id string
		}{{early, "e"}, {late, "l"}} {
			for v := int64(2); v <= 1+before+after; v++ {
				var got struct{ TaskEvents struct{ Version int64 } }
				require.NoError(t, json.Unmarshal(c.ws.next(c.id).Data, &got))
				require.Equal(t, v, got.TaskEvents.Version, "member %s", c.id)
			}
		}
	})
}
