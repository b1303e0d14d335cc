package httpserver_test

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/httpserver"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// requireRateLimited requires r to be a 429 with Retry-After and RATE_LIMITED.
func requireRateLimited(t *testing.T, r *gqlResponse) {
	t.Helper()
	require.Equalf(t, http.StatusTooManyRequests, r.Status, "%s", r.Raw)
	requireCoded(t, r.Header, r.Raw, httpserver.CodeRateLimited)
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After: %q", r.Header.Get("Retry-After"))
	// 0.2 requests per second: the next one is due within 5 s.
	require.True(t, secs >= 1 && secs <= 5, "Retry-After: %d", secs)
}

// The limiter keeps no state in the database, so these run on SQLite only.
func TestRateLimit(t *testing.T) {
	t.Run("OffByDefault", func(t *testing.T) {
		t.Parallel()
		b := setup(t, "sqlite")
		c := b.anon()
		for range 50 {
			r := c.GQL(t, `{ taskCount }`, nil)
			require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		}
	})

	t.Run("PerToken", func(t *testing.T) {
		t.Parallel()
		b := setup(t, "sqlite", apptest.WithAuthMode(auth.ModeRequired), apptest.WithRateLimit(0.2, 3))
		_, alice := b.Mint(t, "alice", ipa.RoleViewer)
		_, bob := b.Mint(t, "bob", ipa.RoleViewer)
		for range 3 {
			b.as(alice).Must(t, `{ taskCount }`, nil, nil)
		}
		requireRateLimited(t, b.as(alice).GQL(t, `{ taskCount }`, nil))
		// Another token has its own budget, even from the same address.
		b.as(bob).Must(t, `{ taskCount }`, nil, nil)

		// Requests without a token count by remote address, and a refused
		// one costs more: a failed authentication spends the address's
		// whole burst here (5 requests' worth, at most the burst), on top
		// of the one request alice's and bob's first (not yet proven)
		// token each took from it.
		r := b.anon().GQL(t, `{ taskCount }`, nil)
		require.Equal(t, http.StatusUnauthorized, r.Status, "%s", r.Raw)
		r = b.anon().GQL(t, `{ taskCount }`, nil)
		require.Equalf(t, http.StatusTooManyRequests, r.Status, "%s", r.Raw)
		requireCoded(t, r.Header, r.Raw, httpserver.CodeRateLimited)
		secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
		require.NoError(t, err)
		require.Greater(t, secs, 5, "the failure's cost is owed before the next request")

		status, _, raw := scrape(t, b.URL+"/metrics", "Bearer "+bob)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, 2.0, metricValue(t, string(raw), `ipa_graphql_errors_total{code="RATE_LIMITED"}`))
	})

	t.Run("Anonymous", func(t *testing.T) {
		t.Parallel()
		b := setup(t, "sqlite", apptest.WithRateLimit(0.2, 2))
		c := b.anon()
		c.Must(t, `{ taskCount }`, nil, nil)
		c.Must(t, `{ taskCount }`, nil, nil)
		requireRateLimited(t, c.GQL(t, `{ taskCount }`, nil))
	})
}
