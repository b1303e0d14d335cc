package httpserver_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/httpserver"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// Refusals by the HTTP layer answer like GraphQL errors, with a code. The
// database plays no part, so this runs on SQLite only.
func TestTransportErrorsAreCoded(t *testing.T) {
	t.Parallel()
	b := setup(t, "sqlite")
	c := b.anon()
	create := `mutation { createTask(input: {title: "over GET"}) { task { id } } }`

	requireCodedResponse := func(t *testing.T, r *gqlResponse, status int, code string) {
		t.Helper()
		require.Equalf(t, status, r.Status, "%s", r.Raw)
		requireCoded(t, r.Header, r.Raw, code)
		require.Len(t, r.Errors, 1)
	}

	t.Run("MutationOverGET", func(t *testing.T) {
		r := c.Do(t, request{Method: http.MethodGet, Query: create})
		requireCodedResponse(t, r, http.StatusMethodNotAllowed, httpserver.CodeMethodNotAllowed)
		require.Equal(t, "POST", r.Header.Get("Allow"))
		r = c.Do(t, request{Method: http.MethodGet, Query: `subscription { events { id } }`})
		requireCodedResponse(t, r, http.StatusMethodNotAllowed, httpserver.CodeMethodNotAllowed)
		require.Zero(t, c.Count(t, nil), "the mutation must not have run")
	})

	t.Run("WrongMethod", func(t *testing.T) {
		for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch} {
			r := c.Do(t, request{Method: m, Query: `{ taskCount }`})
			requireCodedResponse(t, r, http.StatusMethodNotAllowed, httpserver.CodeMethodNotAllowed)
			require.Equal(t, "GET, POST, OPTIONS", r.Header.Get("Allow"))
		}
		r := c.Do(t, request{Method: http.MethodHead})
		require.Equal(t, http.StatusMethodNotAllowed, r.Status)
	})

	t.Run("UnsupportedMediaType", func(t *testing.T) {
		for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "application/graphql", "not a media type"} {
			r := c.Do(t, request{Query: `{ taskCount }`, Headers: map[string]string{"Content-Type": ct}})
			requireCodedResponse(t, r, http.StatusUnsupportedMediaType, httpserver.CodeUnsupportedMediaType)
		}
		r := c.Do(t, request{Query: create, Headers: map[string]string{"Content-Type": "text/plain", "Accept": "text/event-stream"}})
		requireCodedResponse(t, r, http.StatusUnsupportedMediaType, httpserver.CodeUnsupportedMediaType)
		require.Zero(t, c.Count(t, nil), "the mutation must not have run")
	})

	t.Run("BadGETVariables", func(t *testing.T) {
		status, body := b.Get(t, "/graphql?"+url.Values{"query": {`{ taskCount }`}, "variables": {"{not json"}}.Encode())
		require.Equal(t, http.StatusBadRequest, status, body)
		requireCoded(t, http.Header{"Content-Type": {"application/json"}}, []byte(body), ipa.EINVALID)
	})

	t.Run("StillServed", func(t *testing.T) {
		r := c.Do(t, request{Method: http.MethodGet, Query: `{ taskCount }`})
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		require.Empty(t, r.Errors)
		r = c.Do(t, request{Query: `{ taskCount }`, Headers: map[string]string{"Content-Type": "application/json; charset=utf-8"}})
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
		require.Empty(t, r.Errors)
		r = c.Do(t, request{Method: http.MethodOptions})
		require.Equal(t, http.StatusOK, r.Status)
		require.Contains(t, r.Header.Get("Allow"), "POST")
	})

	t.Run("Counted", func(t *testing.T) {
		_, text := b.Get(t, "/metrics")
		require.Equal(t, 6.0, metricValue(t, text, `ipa_graphql_errors_total{code="METHOD_NOT_ALLOWED"}`))
		require.Equal(t, 5.0, metricValue(t, text, `ipa_graphql_errors_total{code="UNSUPPORTED_MEDIA_TYPE"}`))
		require.Equal(t, 1.0, metricValue(t, text, `ipa_graphql_errors_total{code="BAD_USER_INPUT"}`))
	})
}
