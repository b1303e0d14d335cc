package webhook

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The example of the Standard Webhooks specification's reference libraries.
func TestSignStandardWebhooksVector(t *testing.T) {
	sig, err := Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	require.NoError(t, err)
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", sig)
	require.True(t, Verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`), "v1,bm9wZQ== "+sig))
	require.False(t, Verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, []byte(`{"test": 2432232314}`), sig))

	_, err = Sign("whsec_***", "id", 1, nil)
	require.Error(t, err)
}

func TestNewSecret(t *testing.T) {
	a, err := NewSecret()
	require.NoError(t, err)
	b, _ := NewSecret()
	require.True(t, strings.HasPrefix(a, SecretPrefix))
	require.NotEqual(t, a, b)
	_, err = Sign(a, "id", 1, []byte("x"))
	require.NoError(t, err)
}

func TestCheckURL(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		url     string
		private bool // refused only without --webhook-allow-private
		bad     bool // refused always
	}{
		{url: "ftp://example.com/", bad: true},
		{url: "/relative", bad: true},
		{url: "http://user:pw@example.com/", bad: true},
		{url: "http://127.0.0.1:8080/hook", private: true},
		{url: "http://[::1]/hook", private: true},
		{url: "http://10.1.2.3/", private: true},
		{url: "http://192.168.0.1/", private: true},
		{url: "http://169.254.169.254/latest/meta-data", private: true},
		{url: "http://[::ffff:127.0.0.1]/", private: true},
		{url: "http://100.64.0.1/", private: true},
		{url: "http://0.0.0.0/", private: true},
		{url: "http://localhost:9000/", private: true},
		{url: "https://93.184.215.14/hook"},
	} {
		err := CheckURL(ctx, c.url, false)
		if c.bad || c.private {
			require.Error(t, err, c.url)
			require.Equal(t, c.private, errors.Is(err, ErrPrivateAddress), c.url)
		} else {
			require.NoError(t, err, c.url)
		}
		err = CheckURL(ctx, c.url, true)
		require.Equal(t, c.bad, err != nil, c.url)
	}
}

// The dial-time check refuses a private address whatever the URL said: here
// a loopback receiver, reached without --webhook-allow-private.
func TestClientRefusesPrivateAtDial(t *testing.T) {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	defer srv.Close()

	_, err := newClient(time.Second, false).Get(srv.URL)
	require.ErrorIs(t, err, ErrPrivateAddress)
	require.Zero(t, hits)

	resp, err := newClient(time.Second, true).Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 1, hits)
}

// Redirects are never followed: the 3xx is the answer.
func TestClientDoesNotFollowRedirects(t *testing.T) {
	followed := false
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed = true }))
	defer target.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	resp, err := newClient(time.Second, true).Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusTemporaryRedirect, resp.StatusCode)
	require.False(t, followed)
}
