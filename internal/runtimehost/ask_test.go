package runtimehost_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/conversation"
	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/feed"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
	"github.com/ipa-dev/ipa/internal/runtimehost"
	"github.com/ipa-dev/ipa/internal/store"
)

// A restarted run that asks, unkeyed, before the server recorded its
// pod_started waits for it: the ask is the new run's (caused by its
// pod_started), so it gets the request the crashed run asked, and that
// request's answer.
func TestAskOfARestartedRunBeforeItsStartIsRecorded(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "ipa.db"), store.Options{Logger: log})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	broker := feed.NewBroker()
	w := eventlog.NewWriter(st, broker)
	conv := conversation.New(st, w, feed.NewFeed(st, broker, log), log)
	t.Cleanup(conv.Close)
	hosts := runtimehost.Factory(w, st, conv, nil, nil)
	rec := eventlog.NewPodRecorder(w)

	res, err := w.CreateTask(ctx, ipa.CreateTaskRequest{TaskID: uuid.NewString(), Actor: "ann",
		Created: ipa.TaskCreatedData{Title: "t", Runtime: "demo", RestartPolicy: ipa.DefaultRestartPolicy()}})
	require.NoError(t, err)
	id := res.Task.ID
	start := func() ipa.Event {
		ev, err := rec.RecordPodEvent(ctx, id, ipa.NewEvent{Type: ipa.EventPodStarted, Data: ipa.PodStartedData{PID: 1, Runtime: "demo", Trigger: "manual"}})
		require.NoError(t, err)
		return ev
	}
	ask := func(ctx context.Context, h podapi.Host) <-chan podapi.AskResponse {
		out := make(chan podapi.AskResponse, 1)
		go func() {
			defer close(out)
			a, err := h.(podapi.Conversing).Ask(ctx, podapi.AskRequest{Key: podapi.AutoKeyPrefix + uuid.NewString(), Kind: "APPROVAL", Prompt: "Go?"})
			if err == nil {
				out <- a
			}
		}()
		return out
	}
	pending := func() []ipa.InputRequest {
		_, c, err := conv.Load(ctx, id)
		require.NoError(t, err)
		return c.Pending()
	}

	first := start()
	cctx, cancel := context.WithCancel(ctx)
	gone := ask(cctx, hosts(id, "demo"))
	require.Eventually(t, func() bool { return len(pending()) == 1 }, 30*time.Second, 10*time.Millisecond)
	r1 := pending()[0]
	cancel() // the run's process died
	<-gone
	_, err = rec.RecordPodEvent(ctx, id, ipa.NewEvent{Type: ipa.EventPodCrashed, Data: ipa.PodCrashedData{}, CausationID: first.ID})
	require.NoError(t, err)

	// The new run asks before its pod_started is recorded.
	got := ask(ctx, hosts(id, "demo"))
	second := start()
	var reasked []ipa.Event
	require.Eventually(t, func() bool {
		evs, err := st.ReadEvents(ctx, ipa.EventQuery{TaskID: id, Types: []string{ipa.EventInputReasked, ipa.EventInputRequested}, Limit: 100})
		require.NoError(t, err)
		reasked = evs
		return len(evs) == 2
	}, 30*time.Second, 10*time.Millisecond)
	require.Equal(t, ipa.EventInputRequested, reasked[0].Type)
	require.Equal(t, first.ID, reasked[0].CausationID)
	require.Equal(t, ipa.EventInputReasked, reasked[1].Type, "the new run's ask")
	require.Equal(t, second.ID, reasked[1].CausationID)
	require.Len(t, pending(), 1)

	yes := true
	_, _, err = conv.Answer(ctx, "bob", r1.ID, nil, &yes, "")
	require.NoError(t, err)
	select {
	case a := <-got:
		require.Equal(t, r1.ID, a.RequestID)
		require.Equal(t, "ANSWERED", a.State)
		require.True(t, *a.Approved)
	case <-time.After(30 * time.Second):
		t.Fatal("the new run's ask did not return")
	}
}
