package conversation_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/conversation"
	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/feed"
	"github.com/ipa-dev/ipa/internal/lifecycle"
	"github.com/ipa-dev/ipa/internal/lifecycle/lifecycletest"
	"github.com/ipa-dev/ipa/internal/store"
)

// The expiry timer is a lifecycle.Service, sweeping a real store.
func TestExpiryLifecycle(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	st, err := store.Open(context.Background(), dbtest.URL(t, "sqlite"), store.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	broker := feed.NewBroker()
	svc := conversation.New(st, eventlog.NewWriter(st, broker), feed.NewFeed(st, broker, log), log)
	t.Cleanup(svc.Close)
	lifecycletest.Exercise(t, func(t *testing.T) lifecycle.Service {
		return conversation.NewExpiry(svc, time.Millisecond, log)
	})
}
