package httpserver_test

import (
	"context"
	"encoding/json"
	"errors"
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

// A cohort member whose client stops reading for longer than a write may
// make no progress has its connection closed: the client sees the end (not
// an open connection on which nothing ever arrives again), the member
// leaves its cohort, and the other member gets every event throughout.
func TestStalledMemberIsClosed(t *testing.T) {
	// A short bound, so the stall is over soon; the reading member reads
	// each commit's events before the next commit.
	b := setup(t, "sqlite", apptest.WithWebSocketSendTimeout(2*time.Second))
	_, adminSecret := b.Mint(t, "ada", ipa.RoleAdmin)
	admin := b.as(adminSecret)
	tk := admin.CreateTitled(t, "stalled member")
	live := `subscription($id: ID!) { taskEvents(taskId: $id) { id version data } }`
	vars := map[string]any{"id": tk.ID}

	// Generous: it only bounds a hang.
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
	stalled, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(b.URL, "http")+"/graphql", &websocket.DialOptions{
		Subprotocols: []string{"graphql-transport-ws"},
		HTTPClient:   &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = stalled.CloseNow() })
	stalled.SetReadLimit(1 << 20)
	auth, _ := json.Marshal(map[string]any{"Authorization": "Bearer " + adminSecret})
	require.NoError(t, wsjson.Write(ctx, stalled, wsMsg{Type: "connection_init", Payload: auth}))
	var ack wsMsg
	require.NoError(t, wsjson.Read(ctx, stalled, &ack))
	require.Equal(t, "connection_ack", ack.Type)
	sub, _ := json.Marshal(map[string]any{"query": live, "variables": vars})
	require.NoError(t, wsjson.Write(ctx, stalled, wsMsg{ID: "s", Type: "subscribe", Payload: sub}))

	fast := b.dialWS(t, adminSecret)
	require.NoError(t, fast.send("f", live, vars))
	waitFor(t, "two members in one cohort", func() bool { return b.App.Cohorts.Members() == 2 && b.App.Cohorts.Count() == 1 })

	// Commits of four 8 KiB events until the stalled member is gone: far
	// fewer than the bound below once its socket buffers and send queue
	// (a few MiB) are full and its writes stop making progress.
	const maxCommits, perCommit = 600, 4
	line := strings.Repeat("x", 8192)
	commits, version := 0, 1
	for b.App.Cohorts.Members() == 2 {
		require.Less(t, commits, maxCommits, "the stalled member's connection was never closed")
		_, _, err := b.App.Writer.Append(ctx, eventlog.Append{TaskID: tk.ID, Actor: "bench", Decide: func(cur *ipa.Task) ([]ipa.NewEvent, error) {
			out := make([]ipa.NewEvent, perCommit)
			for i := range out {
				out[i] = ipa.NewEvent{Type: ipa.EventPodOutput, Data: map[string]any{"lines": []string{line}}}
			}
			return out, nil
		}})
		require.NoError(t, err)
		commits++
		// The reading member gets every event, in order, as it comes.
		for range perCommit {
			var got struct {
				TaskEvents struct{ Version int }
			}
			require.NoError(t, json.Unmarshal(fast.next("f").Data, &got))
			require.Equal(t, version+1, got.TaskEvents.Version)
			version++
		}
	}
	require.Equal(t, 1, b.App.Cohorts.Members())

	// The stalled client reads again: what was sent before the close, then
	// the end of the connection — not a wait for messages that never come.
	rctx, rcancel := context.WithTimeout(ctx, time.Minute)
	defer rcancel()
	for {
		var m wsMsg
		err := wsjson.Read(rctx, stalled, &m)
		if err != nil {
			require.False(t, errors.Is(err, context.DeadlineExceeded), "the stalled connection is still open: %v", err)
			break
		}
	}
}
