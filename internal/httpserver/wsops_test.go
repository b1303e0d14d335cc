package httpserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// TestDuplicateSubscribeIDCloses4409: on graphql-transport-ws a subscribe
// reusing the id of an operation in flight closes the socket with 4409; an
// id is free again once the client completed it, or once the server ended
// its operation (complete after a query's result, error).
func TestDuplicateSubscribeIDCloses4409(t *testing.T) {
	b := setup(t, "sqlite")
	_, secret := b.Mint(t, "ada", ipa.RoleAdmin)
	ws := b.dialWS(t, secret)

	// The server ends a query's operation: its id can be used again.
	for range 2 {
		require.NoError(t, ws.send("q", `{ viewer { id } }`, nil))
		require.Contains(t, string(ws.next("q").Data), "ada")
		waitForMessage(t, ws, "q", "complete")
	}
	// An operation refused as invalid ends with an error: the id is free.
	require.NoError(t, ws.send("bad", `{ nope }`, nil))
	waitForMessage(t, ws, "bad", "error")
	require.NoError(t, ws.send("bad", `{ viewer { id } }`, nil))
	require.Contains(t, string(waitForMessage(t, ws, "bad", "next").Payload), "ada")

	// The client completes a subscription: its id is free.
	require.NoError(t, ws.send("feed", allEvents, nil))
	require.NoError(t, ws.send("make", apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "one"}}))
	require.Empty(t, ws.next("make").Errors)
	require.Contains(t, string(ws.next("feed").Data), "task_created")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, wsjson.Write(ctx, ws.conn, map[string]any{"id": "feed", "type": "complete"}))
	require.NoError(t, ws.send("feed", allEvents, nil))
	require.Contains(t, string(waitForMessage(t, ws, "feed", "next").Payload), "task_created", "the id is live again after the client's complete")

	// A subscribe reusing the live id closes the socket with 4409.
	require.NoError(t, ws.send("feed", allEvents, nil))
	timeout := time.After(closeWithin)
	for {
		select {
		case _, ok := <-ws.msgs:
			if ok {
				continue // what the first subscription still delivers
			}
			require.Equal(t, websocket.StatusCode(4409), websocket.CloseStatus(ws.err), "%v", ws.err)
			return
		case <-timeout:
			t.Fatal("a subscribe reusing a live id did not close the socket")
		}
	}
}

// waitForMessage reads until operation id's message of type typ, and
// returns it; other messages are dropped.
func waitForMessage(t *testing.T, ws *wsClient, id, typ string) wsMsg {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-ws.msgs:
			require.Truef(t, ok, "connection ended waiting for %s %s: %v", id, typ, ws.err)
			if m.ID == id && m.Type == typ {
				return m
			}
		case <-timeout:
			t.Fatalf("no %s for %s", typ, id)
			return wsMsg{}
		}
	}
}
