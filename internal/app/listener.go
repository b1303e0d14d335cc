package app

import (
	"context"

	"github.com/ipa-dev/ipa/internal/feed"
	"github.com/ipa-dev/ipa/internal/lifecycle"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/webhook"
)

// commitListener hears the commits of other instances on the same
// PostgreSQL database (SQLite has no other instances) and hands them to the
// live feeds and the webhook workers; when notices may have been lost, the
// feeds resync. A lifecycle.Service: it listens from Start until Stop or
// until Start's ctx ends.
type commitListener struct {
	store    *store.Store
	broker   *feed.Broker
	webhooks *webhook.Deliverer
	life     lifecycle.Base
}

func (l *commitListener) Start(ctx context.Context) error {
	ctx, ok := l.life.StartInit(ctx)
	if ok {
		l.life.Go(func() {
			l.store.ListenCommits(ctx, func(n store.CommitNotice) {
				l.broker.Publish(feed.Commit{TaskID: n.TaskID, Version: n.Version, Position: n.Position})
				l.webhooks.Notify()
			}, func() {
				l.broker.Resync()
				l.webhooks.Notify()
			})
		})
	}
	return nil
}

// Stop ends the listening and waits for it.
func (l *commitListener) Stop() { l.life.Stop() }
