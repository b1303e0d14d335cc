package httpserver

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// withMetricsAuth asks /metrics for the same credentials as the API, any role
// will do: a token whenever tokens are required (always with --auth
// required), none while the anonymous local door is open. A scraper that
// cannot send a token, or must keep scraping while the database is down,
// uses the separate metrics listener (MetricsHandler) instead.
func withMetricsAuth(a *auth.Authenticator, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := a.Authenticate(r.Context(), r.Header.Get("Authorization")); err != nil {
			status := http.StatusUnauthorized
			if ipa.ErrorCode(err) != ipa.EUNAUTHENTICATED {
				status = http.StatusServiceUnavailable
			}
			writeError(w, r, status, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// MetricsHandler serves reg at /metrics and nothing else, without
// authentication: the handler of the optional metrics listener
// (--metrics-addr), meant for a private interface that only the scraper
// reaches.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusNotFound, ipa.Errorf(ipa.ENOTFOUND, "", "This listener serves only /metrics."))
	})
	return withCorrelation(mux)
}
