package httpserver_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// A member of a cohort that stops reading its socket holds up neither the
// writers nor the other member: the writes commit and the reading member gets
// every event while the slow one has read nothing. More is written than the
// slow member's socket, send queue and feed buffers hold, so its feed drops
// to the store; when it reads again it gets every event, in order, once.
// (If the slow member held the others up, the reading member's next event
// would not come and the test would fail on its timeout.)
func TestCohortSlowMember(t *testing.T) {
	{ // the cohort's logic does not depend on the database: SQLite only
		// The slow member reads nothing for as long as the writers take,
		// which on a busy machine is longer than the default 30 s a write
		// may make no progress (then its connection is closed:
		// TestStalledMemberIsClosed). The bound here only bounds a hang.
		b := setup(t, "sqlite", apptest.WithWebSocketSendTimeout(5*time.Minute))
		_, adminSecret := b.Mint(t, "ada", ipa.RoleAdmin)
		admin := b.as(adminSecret)
		tk := admin.CreateTitled(t, "slow member")
		live := `subscription($id: ID!) { taskEvents(taskId: $id) { id version type data actorId correlationId occurredAt } }`
		vars := map[string]any{"id": tk.ID}

		// The slow member: a small receive buffer, so the server's writes
		// back up soon, and nothing read after the subscription starts.
		// Generous: it only bounds a hang; the machine may be busy with other tests.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			}); err != nil {
				return err
			}
			return serr
		}}
		slow, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(b.URL, "http")+"/graphql", &websocket.DialOptions{
			Subprotocols: []string{"graphql-transport-ws"},
			HTTPClient:   &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}},
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = slow.CloseNow() })
		slow.SetReadLimit(1 << 20)
		auth, _ := json.Marshal(map[string]any{"Authorization": "Bearer " + adminSecret})
		require.NoError(t, wsjson.Write(ctx, slow, wsMsg{Type: "connection_init", Payload: auth}))
		var ack wsMsg
		require.NoError(t, wsjson.Read(ctx, slow, &ack))
		require.Equal(t, "connection_ack", ack.Type)
		sub, _ := json.Marshal(map[string]any{"query": live, "variables": vars})
		require.NoError(t, wsjson.Write(ctx, slow, wsMsg{ID: "s", Type: "subscribe", Payload: sub}))

		fast := b.dialWS(t, adminSecret)
		require.NoError(t, fast.send("f", live, vars))
		waitFor(t, "two members in one cohort", func() bool { return b.App.Cohorts.Members() == 2 && b.App.Cohorts.Count() == 1 })

		// Commits of four 8 KiB events through the app's writer, as fast as
		// they commit; the reading member reads as they come. 22 MiB in all:
		// more than the slow member's socket (up to 4 MiB of send buffer),
		// send queue (1 MiB) and feed buffers hold, in more commits than its
		// listener holds (256).
		const commits, perCommit = 700, 4
		line := strings.Repeat("x", 8192)
		written := make(chan error, 1)
		go func() {
			for range commits {
				_, _, err := b.App.Writer.Append(ctx, eventlog.Append{TaskID: tk.ID, Actor: "bench", Decide: func(cur *ipa.Task) ([]ipa.NewEvent, error) {
					out := make([]ipa.NewEvent, perCommit)
					for i := range out {
						out[i] = ipa.NewEvent{Type: ipa.EventPodOutput, Data: map[string]any{"lines": []string{line}}}
					}
					return out, nil
				}})
				if err != nil {
					written <- err
					return
				}
			}
			written <- nil
		}()
		const last = 1 + commits*perCommit
		for v := 2; v <= last; v++ {
			var got struct {
				TaskEvents struct{ Version int }
			}
			require.NoError(t, json.Unmarshal(fast.next("f").Data, &got))
			require.Equal(t, v, got.TaskEvents.Version)
		}
		require.NoError(t, <-written)

		// The slow member reads again: everything, in order, once.
		for v := 2; v <= last; {
			var m wsMsg
			require.NoError(t, wsjson.Read(ctx, slow, &m))
			if m.Type == "ping" {
				require.NoError(t, wsjson.Write(ctx, slow, wsMsg{Type: "pong"}))
				continue
			}
			require.Equal(t, "next", m.Type, "%s", m.Payload)
			var got struct {
				Data struct {
					TaskEvents struct{ Version int }
				}
			}
			require.NoError(t, json.Unmarshal(m.Payload, &got))
			require.Equal(t, v, got.Data.TaskEvents.Version)
			v++
		}
	}
}
