package httpserver_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/httpserver"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// scrape GETs url with authorization ("" for none).
func scrape(t *testing.T, url, authorization string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, raw
}

func TestMetricsNeedAToken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend, apptest.WithAuthMode(auth.ModeRequired))
		_, viewer := b.Mint(t, "prometheus", ipa.RoleViewer)
		// The separate listener of --metrics-addr: no token asked.
		side := httptest.NewServer(httpserver.MetricsHandler(b.Registry))
		t.Cleanup(side.Close)

		status, h, raw := scrape(t, b.URL+"/metrics", "")
		require.Equal(t, http.StatusUnauthorized, status, "%s", raw)
		requireCoded(t, h, raw, ipa.EUNAUTHENTICATED)
		require.Contains(t, h.Get("WWW-Authenticate"), "Bearer")
		status, h, raw = scrape(t, b.URL+"/metrics", "Bearer not-a-token")
		require.Equal(t, http.StatusUnauthorized, status, "%s", raw)
		requireCoded(t, h, raw, ipa.EUNAUTHENTICATED)

		status, _, raw = scrape(t, b.URL+"/metrics", "Bearer "+viewer)
		require.Equal(t, http.StatusOK, status, "%s", raw)
		require.Equal(t, 2.0, metricValue(t, string(raw), `ipa_graphql_errors_total{code="UNAUTHENTICATED"}`))

		status, _, raw = scrape(t, side.URL+"/metrics", "")
		require.Equal(t, http.StatusOK, status, "%s", raw)
		require.Contains(t, string(raw), "ipa_graphql_errors_total")
		status, h, raw = scrape(t, side.URL+"/graphql", "")
		require.Equal(t, http.StatusNotFound, status, "%s", raw)
		requireCoded(t, h, raw, ipa.ENOTFOUND)

		t.Run("StoreOutage", func(t *testing.T) {
			require.NoError(t, b.Store.Close())
			// The token cannot be checked: 503, counted like any error.
			r := b.as(viewer).GQL(t, `{ taskCount }`, nil)
			require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s", r.Raw)
			requireCoded(t, r.Header, r.Raw, ipa.EUNAVAILABLE)
			status, h, raw := scrape(t, b.URL+"/metrics", "Bearer "+viewer)
			require.Equal(t, http.StatusServiceUnavailable, status, "%s", raw)
			requireCoded(t, h, raw, ipa.EUNAVAILABLE)

			// The separate listener keeps serving through the outage.
			status, _, raw = scrape(t, side.URL+"/metrics", "")
			require.Equal(t, http.StatusOK, status, "%s", raw)
			require.Equal(t, 2.0, metricValue(t, string(raw), `ipa_graphql_errors_total{code="UNAVAILABLE"}`))
		})
	})
}
