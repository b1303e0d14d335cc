package app

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/feed"
	"github.com/ipa-dev/ipa/internal/lifecycle"
	"github.com/ipa-dev/ipa/internal/lifecycle/lifecycletest"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/webhook"
)

// sweeps counts the deadline timer's sweeps.
type sweeps struct{ n atomic.Int64 }

func (s *sweeps) CancelDue(context.Context) (int, error) { s.n.Add(1); return 0, nil }

// The app's own long-lived parts are lifecycle.Services.
func TestDeadlineTimerLifecycle(t *testing.T) {
	lifecycletest.Exercise(t, func(t *testing.T) lifecycle.Service {
		return &deadlineTimer{tasks: &sweeps{}, interval: time.Millisecond, log: slog.New(slog.DiscardHandler)}
	})
}

// Stop returns only once the timer's goroutine has: no sweep after it.
func TestDeadlineTimerSweepsUntilStop(t *testing.T) {
	s := &sweeps{}
	d := &deadlineTimer{tasks: s, interval: time.Millisecond, log: slog.New(slog.DiscardHandler)}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.n.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the timer did not sweep")
		}
		time.Sleep(time.Millisecond)
	}
	d.Stop()
	n := s.n.Load()
	time.Sleep(20 * time.Millisecond)
	if m := s.n.Load(); m != n {
		t.Fatalf("%d sweeps after Stop returned", m-n)
	}
}

func TestCommitListenerLifecycle(t *testing.T) {
	for _, backend := range dbtest.Backends {
		t.Run(backend, func(t *testing.T) {
			st, err := store.Open(context.Background(), dbtest.URL(t, backend), store.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			wh, err := webhook.New(webhook.Config{Store: st, Owner: "test"})
			if err != nil {
				t.Fatal(err)
			}
			lifecycletest.Exercise(t, func(t *testing.T) lifecycle.Service {
				return &commitListener{store: st, broker: feed.NewBroker(), webhooks: wh}
			})
		})
	}
}
