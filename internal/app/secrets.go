package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/webhook"
)

// prepareSecrets gets the key that seals webhook secrets at rest, checks it
// against the database and seals any secret an earlier version stored in
// plaintext (webhook.PrepareSecrets). Called once the store is open, before
// anything delivers.
func (a *App) prepareSecrets(ctx context.Context) (*webhook.Sealer, error) {
	if a.cfg.SecretKey == nil {
		return nil, errors.New("app: no secret key to seal webhook secrets with (Config.SecretKey)")
	}
	key, err := a.cfg.SecretKey()
	if err != nil {
		return nil, err
	}
	sealer, err := webhook.NewSealer(key)
	if err != nil {
		return nil, err
	}
	n, err := webhook.PrepareSecrets(ctx, a.Store, sealer)
	if errors.Is(err, webhook.ErrWrongKey) {
		return nil, err // says all, and the caller names the key file
	}
	if err != nil {
		return nil, fmt.Errorf("webhook secrets: %w", err)
	}
	if n > 0 {
		a.log.Info("webhook secrets sealed", slog.Int("count", n))
	}
	return sealer, nil
}

// sealingStore is the store as the webhook service sees it: an endpoint's
// secret is sealed before it is stored. (The service hands the secret to
// its creator from its own copy, and never shows a stored one.)
type sealingStore struct {
	*store.Store
	sealer *webhook.Sealer
}

func (s sealingStore) CreateWebhookEndpoint(ctx context.Context, e ipa.WebhookEndpoint) (ipa.WebhookEndpoint, error) {
	sealed, err := s.sealer.Seal(e.Secret)
	if err != nil {
		return ipa.WebhookEndpoint{}, err
	}
	e.Secret = sealed
	return s.Store.CreateWebhookEndpoint(ctx, e)
}
