package httpserver_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// readUntilClose reads conn's messages until the server closes it, and
// returns them with the close code.
func readUntilClose(t *testing.T, conn *websocket.Conn) ([]wsMsg, websocket.StatusCode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var msgs []wsMsg
	for {
		var m wsMsg
		if err := wsjson.Read(ctx, conn, &m); err != nil {
			require.NoError(t, ctx.Err(), "the server did not close the connection")
			return msgs, websocket.CloseStatus(err)
		}
		if m.Type != "ka" && m.Type != "ping" {
			msgs = append(msgs, m)
		}
	}
}

// errorCodes returns the codes of an error message's payload: a list of
// errors on graphql-transport-ws, one error (or a list) on graphql-ws.
func errorCodes(t *testing.T, payload json.RawMessage) []string {
	t.Helper()
	var list []gqlError
	if err := json.Unmarshal(payload, &list); err != nil {
		var one gqlError
		require.NoErrorf(t, json.Unmarshal(payload, &one), "error payload: %s", payload)
		list = []gqlError{one}
	}
	codes := make([]string, 0, len(list))
	for _, e := range list {
		require.NotEmpty(t, e.Message)
		codes = append(codes, e.Code())
	}
	return codes
}

// TestRefusedSocketOperationSaysWhy: an operation refused on an open socket
// because its credential was revoked (by another process, which this server
// hears nothing about) ends with an error message carrying UNAUTHENTICATED —
// not a bare complete — and only then is the socket closed with 4403. Both
// subprotocols.
//
// On SQLite only: there the server learns of a revocation by another
// process from its sweep, every 500 ms, so the operation sent at once is
// almost always checked first (on PostgreSQL the NOTIFY closes the socket
// before). When the sweep wins anyway, the socket is closed with no
// operation in flight; the attempt is made again with a new token.
func TestRefusedSocketOperationSaysWhy(t *testing.T) {
	b := setup(t, "sqlite")
	_, adminSecret := b.Mint(t, "ada", ipa.RoleAdmin)
	other, err := store.Open(context.Background(), b.DBURL, store.Options{})
	require.NoError(t, err)
	defer other.Close()
	for _, proto := range []string{"graphql-transport-ws", "graphql-ws"} {
		t.Run(proto, func(t *testing.T) {
			start := "subscribe"
			if proto == "graphql-ws" {
				start = "start"
			}
			for attempt := 1; ; attempt++ {
				tok, secret := b.Mint(t, "oscar", ipa.RoleOperator)
				conn := b.dialProto(t, proto)
				writeRaw(t, conn, `{"type":"connection_init","payload":{"Authorization":"Bearer `+secret+`"}}`)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var ack wsMsg
				require.NoError(t, wsjson.Read(ctx, conn, &ack))
				cancel()
				require.Equal(t, "connection_ack", ack.Type)
				n := b.as(adminSecret).Count(t, nil)

				require.NoError(t, other.RevokeToken(context.Background(), tok.ID))
				writeRaw(t, conn, `{"id":"make","type":"`+start+`","payload":{"query":"mutation { createTask(input: {title: \"after revoke\"}) { task { id } } }"}}`)
				msgs, code := readUntilClose(t, conn)
				require.Equal(t, websocket.StatusCode(4403), code)
				require.Equal(t, n, b.as(adminSecret).Count(t, nil), "the refused mutation ran")
				if len(msgs) == 0 && attempt < 5 {
					continue // the sweep closed the socket first
				}
				require.NotEmpty(t, msgs, "the refused operation got no message before the close")
				require.Equalf(t, "error", msgs[0].Type, "messages: %+v", msgs)
				require.Equal(t, "make", msgs[0].ID)
				require.Equal(t, []string{ipa.EUNAUTHENTICATED}, errorCodes(t, msgs[0].Payload))
				if proto == "graphql-ws" {
					// Its clients wait for complete after an error.
					require.Len(t, msgs, 2)
					require.Equal(t, "complete", msgs[1].Type)
				} else {
					require.Len(t, msgs, 1)
				}
				return
			}
		})
	}
}

// TestRevokedSubscriptionsSayWhy: revoking a token ends each subscription in
// flight on its sockets with an error message carrying UNAUTHENTICATED
// before the 4403 close, and its SSE streams with an event carrying the same
// code before their end.
func TestRevokedSubscriptionsSayWhy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		_, adminSecret := b.Mint(t, "ada", ipa.RoleAdmin)
		tok, secret := b.Mint(t, "oscar", ipa.RoleOperator)
		ws := b.dialWS(t, secret)
		require.NoError(t, ws.send("feed", allEvents, nil))
		b.as(adminSecret).CreateTitled(t, "before")
		require.Contains(t, string(ws.next("feed").Data), "task_created")
		sse := b.openSSE(t, secret, allEvents)
		require.Contains(t, sse.first(t), "task_created")

		b.as(adminSecret).Must(t, revokeMutation, map[string]any{"id": tok.ID}, nil)

		var got []wsMsg
		timeout := time.After(closeWithin)
	read:
		for {
			select {
			case m, ok := <-ws.msgs:
				if !ok {
					break read
				}
				got = append(got, m)
			case <-timeout:
				t.Fatal("the socket was not closed")
			}
		}
		require.Equal(t, websocket.StatusCode(4403), websocket.CloseStatus(ws.err))
		var ended bool
		for _, m := range got {
			if m.ID == "feed" && m.Type == "error" {
				require.Equal(t, []string{ipa.EUNAUTHENTICATED}, errorCodes(t, m.Payload))
				ended = true
			}
		}
		require.Truef(t, ended, "no error message for the subscription before the close: %+v", got)

		var last string
		timeout = time.After(closeWithin)
	stream:
		for {
			select {
			case e, ok := <-sse.events:
				if !ok {
					break stream
				}
				last = e
			case <-timeout:
				t.Fatal("the stream did not end")
			}
		}
		var r wsResult
		require.NoError(t, json.Unmarshal([]byte(last), &r), last)
		require.Lenf(t, r.Errors, 1, "the stream's last event: %s", last)
		apptest.RequireError(t, r.Errors[0], ipa.EUNAUTHENTICATED, "")
	})
}
