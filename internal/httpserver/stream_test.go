package httpserver_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/ipa"
)

const (
	taskEventsStreamSub = `subscription($id: ID!, $v: Int, $n: Int) { taskEventsStream(taskId: $id, afterVersion: $v, batchSize: $n) { version position type } }`
	eventsStreamSub     = `subscription($p: String, $n: Int) { eventsStream(afterPosition: $p, batchSize: $n) { version position type taskId } }`
	moveMutation        = `mutation($id: ID!, $to: TaskPhase!) { transitionPhase(taskId: $id, to: $to) { task { version } } }`
)

type streamEvent struct {
	Version  int64  `json:"version"`
	Position string `json:"position"`
	Type     string `json:"type"`
	TaskID   string `json:"taskId"`
}

// batch decodes one message of a batched stream and checks its bounds.
func batch(t *testing.T, r wsResult, field string, size int) []streamEvent {
	t.Helper()
	require.Emptyf(t, r.Errors, "%+v", r.Errors)
	var data map[string][]streamEvent
	require.NoError(t, json.Unmarshal(r.Data, &data))
	b := data[field]
	require.NotEmpty(t, b, "an empty batch")
	require.LessOrEqual(t, len(b), size)
	return b
}

// The batched streams over a real WebSocket as a viewer: catch-up and live
// events arrive as lists of consecutive events within batchSize, the same
// events as taskEvents gives; live events come at once; a batchSize out of
// 1..1000 is BAD_USER_INPUT/INVALID_ARGUMENT; the stream of a revoked token
// is closed with 4403. Over SSE each event is one batch.
func TestEventStreams(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		_, adminSecret := b.Mint(t, "ada", ipa.RoleAdmin)
		viewerTok, viewerSecret := b.Mint(t, "vera", ipa.RoleViewer)
		admin := b.as(adminSecret)
		tk := admin.CreateTitled(t, "streamed")
		phases := []string{"PLANNING", "DEVELOPMENT", "PLANNING", "DEVELOPMENT", "REVIEW"}
		for _, to := range phases {
			admin.Must(t, moveMutation, map[string]any{"id": tk.ID, "to": to}, nil)
		}
		const stored = 6 // task_created and five phase changes

		ws := b.dialWS(t, viewerSecret)
		require.NoError(t, ws.send("task", taskEventsStreamSub, map[string]any{"id": tk.ID, "v": 0, "n": 4}))
		var versions []int64
		for len(versions) < stored {
			for _, e := range batch(t, ws.next("task"), "taskEventsStream", 4) {
				versions = append(versions, e.Version)
			}
		}
		require.Equal(t, []int64{1, 2, 3, 4, 5, 6}, versions)

		head := b.HeadPosition(t)
		require.NoError(t, ws.send("all", eventsStreamSub, map[string]any{"p": "0", "n": 1000}))
		var positions []string
		for int64(len(positions)) < head {
			for _, e := range batch(t, ws.next("all"), "eventsStream", 1000) {
				positions = append(positions, e.Position)
			}
		}
		for i, p := range positions {
			require.Equal(t, fmt.Sprint(i+1), p)
		}

		// Live: one change is one batch of one, on both streams.
		admin.Must(t, moveMutation, map[string]any{"id": tk.ID, "to": "DEVELOPMENT"}, nil)
		live := batch(t, ws.next("task"), "taskEventsStream", 4)
		require.Equal(t, []streamEvent{{Version: 7, Position: fmt.Sprint(head + 1), Type: ipa.EventPhaseChanged}}, live)
		liveAll := batch(t, ws.next("all"), "eventsStream", 1000)
		require.Len(t, liveAll, 1)
		require.Equal(t, fmt.Sprint(head+1), liveAll[0].Position)

		// Bad batch sizes: refused with the contract's code and a reason.
		for _, n := range []int{0, -5, 1001} {
			id := fmt.Sprintf("bad%d", n)
			require.NoError(t, ws.send(id, taskEventsStreamSub, map[string]any{"id": tk.ID, "n": n}))
			r := ws.next(id)
			require.Len(t, r.Errors, 1, "batchSize %d", n)
			apptest.RequireError(t, r.Errors[0], ipa.EINVALID, ipa.ReasonInvalidArgument)
			require.Contains(t, r.Errors[0].Message, "batchSize")
			id = fmt.Sprintf("badall%d", n)
			require.NoError(t, ws.send(id, eventsStreamSub, map[string]any{"n": n}))
			r = ws.next(id)
			require.Len(t, r.Errors, 1, "batchSize %d", n)
			apptest.RequireError(t, r.Errors[0], ipa.EINVALID, ipa.ReasonInvalidArgument)
		}

		// SSE: the same stream as a text/event-stream; the default batch
		// (100) holds the whole task.
		sse := b.openSSE(t, viewerSecret, fmt.Sprintf(`subscription { taskEventsStream(taskId: %q, afterVersion: 0) { version } }`, tk.ID))
		var first struct {
			Data struct {
				TaskEventsStream []streamEvent `json:"taskEventsStream"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal([]byte(sse.first(t)), &first))
		require.Len(t, first.Data.TaskEventsStream, 7)

		// Same authorization as the single-event feeds: revoking the
		// viewer's token closes its socket with 4403 and ends its SSE stream.
		admin.Must(t, revokeMutation, map[string]any{"id": viewerTok.ID}, nil)
		require.Equal(t, websocket.StatusCode(4403), ws.closeCode(closeWithin))
		sse.requireEnds(t, closeWithin)
	})
}
