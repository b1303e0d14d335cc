package webhook_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/webhook"
)

func sealer(t *testing.T, fill byte) *webhook.Sealer {
	t.Helper()
	s, err := webhook.NewSealer(bytes.Repeat([]byte{fill}, webhook.KeySize))
	require.NoError(t, err)
	return s
}

func TestSealerRoundTripAndRefusals(t *testing.T) {
	a, b := sealer(t, 1), sealer(t, 2)
	secret, err := webhook.NewSecret()
	require.NoError(t, err)

	sealed, err := a.Seal(secret)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(sealed, webhook.SealedPrefix), sealed)
	require.NotContains(t, sealed, strings.TrimPrefix(secret, webhook.SecretPrefix))
	again, err := a.Seal(secret)
	require.NoError(t, err)
	require.NotEqual(t, sealed, again, "a fresh nonce per seal")

	got, err := a.Open(sealed)
	require.NoError(t, err)
	require.Equal(t, secret, got)

	_, err = b.Open(sealed)
	require.ErrorIs(t, err, webhook.ErrWrongKey)

	// One flipped bit of the ciphertext: refused, not garbage.
	raw := []byte(sealed)
	i := len(raw) - 5
	raw[i] ^= 1
	if raw[i] == '=' || raw[i] == sealed[i] {
		raw[i] = 'A'
	}
	_, err = a.Open(string(raw))
	require.Error(t, err)

	// A plaintext secret of an earlier version reads as it is.
	got, err = a.Open(secret)
	require.NoError(t, err)
	require.Equal(t, secret, got)

	_, err = webhook.NewSealer([]byte("short"))
	require.Error(t, err)
}

// PrepareSecrets seals the plaintext secrets an earlier version stored,
// once (a second run finds nothing to do), stamps the database with its key,
// and refuses another key before anything is signed with garbage.
func TestPrepareSecrets(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, backend string) {
		ctx := context.Background()
		st := openStore(t, backend)
		plain, _ := webhook.NewSecret()
		e, err := st.CreateWebhookEndpoint(ctx, ipa.WebhookEndpoint{URL: "https://example.com/hook", Secret: plain})
		require.NoError(t, err)

		a := sealer(t, 1)
		n, err := webhook.PrepareSecrets(ctx, st, a)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		got, err := st.WebhookEndpoint(ctx, e.ID)
		require.NoError(t, err)
		require.True(t, webhook.IsSealed(got.Secret), "stored %q", got.Secret)
		opened, err := a.Open(got.Secret)
		require.NoError(t, err)
		require.Equal(t, plain, opened)

		n, err = webhook.PrepareSecrets(ctx, st, a)
		require.NoError(t, err)
		require.Zero(t, n, "sealing is done once")
		again, _ := st.WebhookEndpoint(ctx, e.ID)
		require.Equal(t, got.Secret, again.Secret)

		_, err = webhook.PrepareSecrets(ctx, st, sealer(t, 2))
		require.ErrorIs(t, err, webhook.ErrWrongKey)
	})
}

// A database whose only sealed secret is an endpoint's (its key check row
// lost, say by a partial restore) still refuses another key.
func TestPrepareSecretsChecksEverySealedSecret(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, "sqlite")
	sealed, err := sealer(t, 1).Seal("whsec_" + strings.Repeat("A", 43) + "=")
	require.NoError(t, err)
	_, err = st.CreateWebhookEndpoint(ctx, ipa.WebhookEndpoint{URL: "https://example.com/hook", Secret: sealed})
	require.NoError(t, err)
	_, err = webhook.PrepareSecrets(ctx, st, sealer(t, 2))
	require.ErrorIs(t, err, webhook.ErrWrongKey)
}

// The deliverer signs with the opened secret: the receiver verifies with
// the plaintext one its creator was shown.
func TestDelivererSignsWithOpenedSecret(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, "sqlite")
	a := sealer(t, 1)
	plain, _ := webhook.NewSecret()
	var good, bad atomic.Int64
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body bytes.Buffer
		_, _ = body.ReadFrom(r.Body)
		ts, _ := strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64)
		if webhook.Verify(plain, r.Header.Get("webhook-id"), ts, body.Bytes(), r.Header.Get("webhook-signature")) {
			good.Add(1)
		} else {
			bad.Add(1)
		}
	}))
	defer rcv.Close()
	sealed, err := a.Seal(plain)
	require.NoError(t, err)
	_, err = st.CreateWebhookEndpoint(ctx, ipa.WebhookEndpoint{URL: rcv.URL, Secret: sealed})
	require.NoError(t, err)
	createTasks(t, st, 2)
	d, err := webhook.New(webhook.Config{Store: st, Owner: "test", AllowPrivate: true, PollInterval: 20 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Secrets: a})
	require.NoError(t, err)
	require.NoError(t, d.Start(context.Background()))
	defer d.Stop()
	require.Eventually(t, func() bool { return good.Load() >= 2 }, 20*time.Second, 10*time.Millisecond)
	require.Zero(t, bad.Load())
}
