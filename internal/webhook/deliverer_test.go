package webhook_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/lifecycle"
	"github.com/ipa-dev/ipa/internal/lifecycle/lifecycletest"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/webhook"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

func openStore(tb testing.TB, backend string) *store.Store {
	tb.Helper()
	s, err := store.Open(context.Background(), dbtest.URL(tb, backend), store.Options{})
	require.NoError(tb, err)
	tb.Cleanup(func() { s.Close() })
	return s
}

func createTasks(tb testing.TB, s *store.Store, n int) {
	tb.Helper()
	for range n {
		_, err := s.CreateTask(context.Background(), ipa.CreateTaskRequest{
			TaskID:  uuid.NewString(),
			Created: ipa.TaskCreatedData{Title: "hooked", Runtime: "demo", RestartPolicy: ipa.DefaultRestartPolicy()},
			Actor:   "bench", CorrelationID: "c",
		})
		require.NoError(tb, err)
	}
}

func startDeliverer(tb testing.TB, s *store.Store) *webhook.Deliverer {
	tb.Helper()
	d, err := webhook.New(webhook.Config{Store: s, Owner: "test", AllowPrivate: true, PollInterval: 20 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	require.NoError(tb, err)
	require.NoError(tb, d.Start(context.Background()))
	tb.Cleanup(d.Stop)
	return d
}

// An endpoint whose types match nothing still moves its position to the
// head, so it does not read the same events again on every wake.
func TestDelivererFilteredEndpointFollowsTheHead(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, backend string) {
		s := openStore(t, backend)
		var hits atomic.Int64
		rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
		defer rcv.Close()
		secret, _ := webhook.NewSecret()
		e, err := s.CreateWebhookEndpoint(context.Background(), ipa.WebhookEndpoint{URL: rcv.URL, Types: []string{ipa.EventTaskCompleted}, Secret: secret})
		require.NoError(t, err)
		createTasks(t, s, 5)
		head, _ := s.HeadPosition(context.Background())
		d := startDeliverer(t, s)
		require.Eventually(t, func() bool {
			got, _ := s.WebhookEndpoint(context.Background(), e.ID)
			return got.Position == head
		}, 20*time.Second, 10*time.Millisecond)
		d.Stop()
		require.Zero(t, hits.Load())
		log, _ := s.WebhookDeliveries(context.Background(), ipa.WebhookDeliveryQuery{EndpointID: e.ID, Limit: 10})
		require.Empty(t, log)
	})
}

// Stop releases the leases, so another server takes the endpoint at once.
func TestDelivererStopReleasesLeases(t *testing.T) {
	s := openStore(t, "sqlite")
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer rcv.Close()
	secret, _ := webhook.NewSecret()
	e, err := s.CreateWebhookEndpoint(context.Background(), ipa.WebhookEndpoint{URL: rcv.URL, Secret: secret})
	require.NoError(t, err)
	d := startDeliverer(t, s)
	require.Eventually(t, func() bool {
		ok, _ := s.ClaimWebhookEndpoint(context.Background(), e.ID, "other", time.Now(), time.Minute)
		if ok {
			_ = s.ReleaseWebhookEndpoint(context.Background(), e.ID, "other")
		}
		return !ok // the deliverer holds it
	}, 10*time.Second, 5*time.Millisecond)
	d.Stop()
	ok, err := s.ClaimWebhookEndpoint(context.Background(), e.ID, "other", time.Now(), time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
}

// BenchmarkDelivery: events delivered per second to a loopback receiver
// that answers 204 at once, through the store (read page, sign, POST,
// record attempt, advance position), beside the baseline of the same signed
// POSTs sent in a loop with nothing stored.
func BenchmarkDelivery(b *testing.B) {
	for _, backend := range dbtest.Backends {
		b.Run(backend, func(b *testing.B) {
			s := openStore(b, backend)
			var got atomic.Int64
			rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got.Add(1)
				w.WriteHeader(http.StatusNoContent)
			}))
			defer rcv.Close()
			secret, _ := webhook.NewSecret()
			_, err := s.CreateWebhookEndpoint(context.Background(), ipa.WebhookEndpoint{URL: rcv.URL, Secret: secret})
			require.NoError(b, err)
			createTasks(b, s, b.N)
			b.ResetTimer()
			startDeliverer(b, s)
			for got.Load() < int64(b.N) {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
	b.Run("baseline-post-only", func(b *testing.B) {
		rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
		defer rcv.Close()
		secret, _ := webhook.NewSecret()
		client := &http.Client{Timeout: 10 * time.Second}
		body := []byte(`{"type":"task_created","timestamp":"2026-12-03T09:00:00Z","data":{"id":"x"}}`)
		for b.Loop() {
			sig, _ := webhook.Sign(secret, "x", time.Now().Unix(), body)
			req, _ := http.NewRequest(http.MethodPost, rcv.URL, bytes.NewReader(body))
			req.Header.Set("webhook-signature", sig)
			resp, err := client.Do(req)
			require.NoError(b, err)
			resp.Body.Close()
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// The deliverer is a lifecycle.Service.
func TestDelivererLifecycle(t *testing.T) {
	s := openStore(t, "sqlite")
	lifecycletest.Exercise(t, func(t *testing.T) lifecycle.Service {
		d, err := webhook.New(webhook.Config{Store: s, Owner: "test", PollInterval: time.Millisecond})
		require.NoError(t, err)
		return d
	})
}
