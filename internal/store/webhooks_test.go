package store

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

func testWebhooks(t *testing.T, s *Store) {
	ctx := context.Background()
	createTask(t, s, "before", t0)
	head, err := s.HeadPosition(ctx)
	require.NoError(t, err)

	e, err := s.CreateWebhookEndpoint(ctx, ipa.WebhookEndpoint{
		URL: "https://example.com/hook", Types: []string{"task_created"}, Secret: "whsec_x", CreatedAt: t0, CreatedBy: "admin",
	})
	require.NoError(t, err)
	require.NotEmpty(t, e.ID)
	require.Equal(t, head, e.Position, "a new endpoint starts at the head: it gets only later events")
	require.Equal(t, []string{"task_created"}, e.Types)
	require.False(t, e.Paused)
	require.True(t, e.CreatedAt.Equal(t0))

	all, err := s.ListWebhookEndpoints(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.Equal(t, e.ID, all[0].ID)
	require.Equal(t, "whsec_x", all[0].Secret)

	paused, err := s.SetWebhookEndpointPaused(ctx, e.ID, true)
	require.NoError(t, err)
	require.True(t, paused.Paused)
	_, err = s.SetWebhookEndpointPaused(ctx, "nope", true)
	require.Equal(t, ipa.ENOTFOUND, ipa.ErrorCode(err))

	t.Run("Lease", func(t *testing.T) {
		now := time.Now()
		ok, err := s.ClaimWebhookEndpoint(ctx, e.ID, "a", now, time.Minute)
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = s.ClaimWebhookEndpoint(ctx, e.ID, "b", now, time.Minute)
		require.NoError(t, err)
		require.False(t, ok, "one deliverer per endpoint")
		ok, _ = s.ClaimWebhookEndpoint(ctx, e.ID, "a", now.Add(time.Second), time.Minute)
		require.True(t, ok, "the holder renews")

		ok, err = s.AdvanceWebhookPosition(ctx, e.ID, "b", head+5)
		require.NoError(t, err)
		require.False(t, ok, "only the holder moves the position")
		ok, err = s.AdvanceWebhookPosition(ctx, e.ID, "a", head+5)
		require.NoError(t, err)
		require.True(t, ok)
		ok, _ = s.AdvanceWebhookPosition(ctx, e.ID, "a", head+2)
		require.True(t, ok)
		got, err := s.WebhookEndpoint(ctx, e.ID)
		require.NoError(t, err)
		require.Equal(t, head+5, got.Position, "the position never moves back")

		ok, _ = s.ClaimWebhookEndpoint(ctx, e.ID, "b", now.Add(2*time.Minute), time.Minute)
		require.True(t, ok, "an expired lease is taken over")
		ok, _ = s.AdvanceWebhookPosition(ctx, e.ID, "a", head+9)
		require.False(t, ok, "the old holder lost it")
		require.NoError(t, s.ReleaseWebhookEndpoint(ctx, e.ID, "a"), "releasing another's lease is a no-op")
		ok, _ = s.ClaimWebhookEndpoint(ctx, e.ID, "a", now.Add(2*time.Minute), time.Minute)
		require.False(t, ok)
		require.NoError(t, s.ReleaseWebhookEndpoint(ctx, e.ID, "b"))
		ok, _ = s.ClaimWebhookEndpoint(ctx, e.ID, "a", now.Add(2*time.Minute), time.Minute)
		require.True(t, ok, "a released lease is free at once")
	})

	t.Run("Log", func(t *testing.T) {
		record := func(a ipa.WebhookAttempt) {
			t.Helper()
			held, err := s.RecordWebhookAttempt(ctx, "a", a)
			require.NoError(t, err)
			require.True(t, held)
		}
		status := 500
		ev := func(pos int64) ipa.Event {
			return ipa.Event{ID: "ev", Position: pos, Type: "task_created"}
		}
		record(ipa.WebhookAttempt{EndpointID: e.ID, Event: ev(10), ResponseStatus: &status, Error: "HTTP 500", At: t0})
		record(ipa.WebhookAttempt{EndpointID: e.ID, Event: ev(10), Error: "timeout", At: t0.Add(time.Second)})
		record(ipa.WebhookAttempt{EndpointID: e.ID, Event: ev(10), Delivered: true, At: t0.Add(2 * time.Second)})
		record(ipa.WebhookAttempt{EndpointID: e.ID, Event: ev(11), ResponseStatus: &status, Error: "HTTP 500", At: t0.Add(3 * time.Second)})

		held, err := s.RecordWebhookAttempt(ctx, "b", ipa.WebhookAttempt{EndpointID: e.ID, Event: ev(12), Delivered: true, At: t0})
		require.NoError(t, err)
		require.False(t, held, "only the lease holder records a delivery")
		got, _ := s.WebhookEndpoint(ctx, e.ID)
		require.Equal(t, max(head+5, 10), got.Position, "a delivery moves the position to its event")

		log, err := s.WebhookDeliveries(ctx, ipa.WebhookDeliveryQuery{EndpointID: e.ID, Limit: 10})
		require.NoError(t, err)
		require.Len(t, log, 2)
		require.Equal(t, int64(11), log[0].Position, "newest first")
		require.Equal(t, ipa.WebhookRetrying, log[0].Status)
		require.Equal(t, 500, *log[0].ResponseStatus)
		require.Equal(t, ipa.WebhookDelivered, log[1].Status)
		require.Equal(t, 3, log[1].Attempts)
		require.Nil(t, log[1].ResponseStatus)
		require.Equal(t, "timeout", log[1].LastError, "the last failure stays after delivery")
		require.True(t, log[1].LastAttemptAt.Equal(t0.Add(2*time.Second)))

		older, err := s.WebhookDeliveries(ctx, ipa.WebhookDeliveryQuery{EndpointID: e.ID, Before: 11, Limit: 10})
		require.NoError(t, err)
		require.Len(t, older, 1)
		require.Equal(t, int64(10), older[0].Position)

		require.NoError(t, s.TrimWebhookDeliveries(ctx, e.ID, 1))
		log, _ = s.WebhookDeliveries(ctx, ipa.WebhookDeliveryQuery{EndpointID: e.ID, Limit: 10})
		require.Len(t, log, 1)
		require.Equal(t, int64(11), log[0].Position)
	})

	deleted, err := s.DeleteWebhookEndpoint(ctx, e.ID)
	require.NoError(t, err)
	require.Equal(t, e.ID, deleted.ID)
	_, err = s.DeleteWebhookEndpoint(ctx, e.ID)
	require.Equal(t, ipa.ENOTFOUND, ipa.ErrorCode(err))
	log, err := s.WebhookDeliveries(ctx, ipa.WebhookDeliveryQuery{EndpointID: e.ID, Limit: 10})
	require.NoError(t, err)
	require.Empty(t, log, "the log goes with its endpoint")
	none, _ := s.WebhookEndpoint(ctx, e.ID)
	require.Nil(t, none)
}
