package httpserver_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/httpserver"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// nested returns a query whose deepest field sits depth levels down: an
// introspection chain of ofType fields.
func nested(depth int) string {
	// __schema(1) types(2) fields(3) type(4) ofType... name(depth)
	var sb strings.Builder
	sb.WriteString("{ __schema { types { fields { type { ")
	for range depth - 5 {
		sb.WriteString("ofType { ")
	}
	sb.WriteString("name")
	for range depth {
		sb.WriteString(" }")
	}
	return sb.String()
}

func TestLimits(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		c := b.anon()
		c.CreateTitled(t, "exists")
		alive := func(t *testing.T) {
			t.Helper()
			require.Equal(t, "local", c.Viewer(t).Viewer.ID, "the server still answers")
		}

		t.Run("BodyTooLarge", func(t *testing.T) {
			n := c.Count(t, nil)
			title := strings.Repeat("x", httpserver.MaxBodyBytes)
			body, err := json.Marshal(map[string]any{"query": apptest.CreateTaskMutation, "variables": map[string]any{"input": map[string]any{"title": title}}})
			require.NoError(t, err)
			require.Greater(t, len(body), httpserver.MaxBodyBytes)

			// Announced length: refused before reading.
			r := c.Do(t, request{Body: body})
			require.Equal(t, http.StatusRequestEntityTooLarge, r.Status)
			require.Len(t, r.Errors, 1)
			apptest.RequireError(t, r.Errors[0], ipa.EINVALID, ipa.ReasonInvalidArgument)
			alive(t)

			// Unannounced length (chunked): cut off while reading.
			req, err := http.NewRequest(http.MethodPost, b.URL+"/graphql", io.MultiReader(bytes.NewReader(body)))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			req.ContentLength = -1
			resp, err := b.Srv.Client().Do(req)
			if err == nil {
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.GreaterOrEqualf(t, resp.StatusCode, 400, "%s", raw)
				require.Lessf(t, resp.StatusCode, 500, "%s", raw)
				var gr gqlResponse
				if json.Unmarshal(raw, &gr) == nil {
					b.Record(gr.Errors)
				}
			}
			alive(t)
			require.Equal(t, n, c.Count(t, nil))
		})

		t.Run("Depth", func(t *testing.T) {
			// The deepest document the schema allows runs; the limit itself is
			// exercised in limits_internal_test.go, since no valid document
			// over this schema reaches it (and introspection is exempt).
			deepest := `{ tasks(first: 1) { edges { node { events(first: 1) { edges { node { id } } } } } } }`
			r := c.GQL(t, deepest, nil)
			require.Emptyf(t, r.Errors, "%s", r.Raw)
			require.NotEmpty(t, r.Data)

			// Tools' introspection, however deep, is not refused.
			r = c.GQL(t, nested(httpserver.MaxQueryDepth+2), nil)
			require.Emptyf(t, r.Errors, "%d %.300s", r.Status, r.Raw)
			require.NotEmpty(t, r.Data)
			alive(t)
		})

		t.Run("Complexity", func(t *testing.T) {
			n, head := c.Count(t, nil), b.HeadPosition(t)
			// Each alias costs 2 + the task's fields; enough aliases pass the limit.
			var sb strings.Builder
			sb.WriteString("mutation {")
			for i := range 600 {
				fmt.Fprintf(&sb, ` c%d: createTask(input: {title: "bulk %d"}) { task { id title status phase runtime version createdBy createdAt updatedAt } }`, i, i)
			}
			sb.WriteString(" }")
			r := c.GQL(t, sb.String(), nil)
			require.Len(t, r.Errors, 1)
			require.Equal(t, "COMPLEXITY_LIMIT_EXCEEDED", r.Errors[0].Code(), r.Errors[0].Message)
			requireNoData(t, r)
			require.Equal(t, n, c.Count(t, nil), "refused before running: nothing created")
			require.Equal(t, head, b.HeadPosition(t))

			// A cheap query still runs.
			var sb2 strings.Builder
			sb2.WriteString("{")
			for i := range 10 {
				fmt.Fprintf(&sb2, " v%d: viewer { id }", i)
			}
			sb2.WriteString(" }")
			require.Empty(t, c.GQL(t, sb2.String(), nil).Errors)
		})

		t.Run("GET", func(t *testing.T) {
			r := c.Do(t, request{Method: http.MethodGet, Query: `query($f: TaskFilter) { taskCount(filter: $f) viewer { id } }`, Vars: map[string]any{"f": map[string]any{"titleContains": "exist"}}})
			require.Equal(t, http.StatusOK, r.Status)
			require.Empty(t, r.Errors)
			require.JSONEq(t, `{"taskCount": 1, "viewer": {"id": "local"}}`, string(r.Data))

			n, head := c.Count(t, nil), b.HeadPosition(t)
			r = c.Do(t, request{Method: http.MethodGet, Query: `mutation { createTask(input: {title: "via GET"}) { task { id } } }`})
			require.GreaterOrEqual(t, r.Status, 400, "%s", r.Raw)
			require.Less(t, r.Status, 500)
			requireNoData(t, r)
			require.Equal(t, n, c.Count(t, nil), "a GET mutation created a task")
			require.Equal(t, head, b.HeadPosition(t))
		})

		t.Run("GraphQLResponseContentType", func(t *testing.T) {
			r := c.Do(t, request{Query: `{ viewer { id } }`, Headers: map[string]string{"Accept": "application/graphql-response+json"}})
			require.Equal(t, http.StatusOK, r.Status)
			require.True(t, strings.HasPrefix(r.Header.Get("Content-Type"), "application/graphql-response+json"), r.Header.Get("Content-Type"))
			require.Empty(t, r.Errors)
			require.JSONEq(t, `{"viewer": {"id": "local"}}`, string(r.Data))

			r = c.Do(t, request{Query: `{ viewer { id } }`, Headers: map[string]string{"Accept": "application/json"}})
			require.True(t, strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"), r.Header.Get("Content-Type"))
		})

		t.Run("MalformedBodies", func(t *testing.T) {
			for _, body := range []string{``, `{`, `[]`, `{"query": 5}`, `{"query": "{ viewer { id } }", "variables": "nope"}`, "\x00\xff", `{}`} {
				r := c.Do(t, request{Body: []byte(body)})
				require.GreaterOrEqualf(t, r.Status, 400, "%q: %s", body, r.Raw)
				require.Lessf(t, r.Status, 500, "%q: %s", body, r.Raw)
				require.NotEmptyf(t, r.Errors, "%q: %s", body, r.Raw)
				require.NotEqualf(t, ipa.EINTERNAL, r.Errors[0].Code(), "a malformed request is the client's fault: %q: %s", body, r.Raw)
				requireNoData(t, r)
			}
			alive(t)
		})
	})
}

// requireNoData asserts the response carries no data: the operation never ran.
func requireNoData(t *testing.T, r *gqlResponse) {
	t.Helper()
	if len(r.Data) > 0 {
		require.JSONEq(t, `null`, string(r.Data))
	}
}

// metricValue returns the value of the sample named by series (name and
// labels exactly as exposed), or -1 when it is absent.
func metricValue(t *testing.T, text, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

func TestHealthAndMetrics(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		c := b.anon()

		status, body := b.Get(t, "/healthz")
		require.Equal(t, http.StatusOK, status)
		require.True(t, strings.HasPrefix(body, "ok "), body)
		status, _ = b.Get(t, "/readyz")
		require.Equal(t, http.StatusOK, status)

		for i := range 3 {
			c.CreateTitled(t, fmt.Sprintf("m%d", i))
		}
		c.Create(t, map[string]any{"title": "e", "runtime": "exec", "runtimeConfig": map[string]any{"command": []string{"true"}}})
		for range 2 {
			c.Fail(t, apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": " "}})
		}
		c.Fail(t, `mutation { completeTask(taskId: "nope") { task { id } } }`, nil)
		c.Count(t, nil)
		c.GQL(t, `{ nope }`, nil)

		status, text := b.Get(t, "/metrics")
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, 3.0, metricValue(t, text, `ipa_tasks_created_total{runtime="demo"}`))
		require.Equal(t, 1.0, metricValue(t, text, `ipa_tasks_created_total{runtime="exec"}`))
		require.Equal(t, 6.0, metricValue(t, text, `ipa_graphql_requests_total{operation="mutation createTask"}`))
		require.Equal(t, 1.0, metricValue(t, text, `ipa_graphql_requests_total{operation="mutation completeTask"}`))
		require.Equal(t, 1.0, metricValue(t, text, `ipa_graphql_requests_total{operation="query taskCount"}`))
		require.Equal(t, 2.0, metricValue(t, text, `ipa_graphql_errors_total{code="BAD_USER_INPUT"}`))
		require.Equal(t, 1.0, metricValue(t, text, `ipa_graphql_errors_total{code="NOT_FOUND"}`))
		require.Equal(t, 1.0, metricValue(t, text, `ipa_graphql_errors_total{code="GRAPHQL_VALIDATION_FAILED"}`))
		require.Equal(t, -1.0, metricValue(t, text, `ipa_graphql_errors_total{code="INTERNAL_SERVER_ERROR"}`))
		require.Contains(t, text, "ipa_graphql_request_duration_seconds_bucket")

		// Client-chosen operation names do not become labels.
		c.GQL(t, `query MyVeryOwnName { taskCount }`, nil)
		_, text = b.Get(t, "/metrics")
		require.NotContains(t, text, "MyVeryOwnName")
		require.Equal(t, 2.0, metricValue(t, text, `ipa_graphql_requests_total{operation="query taskCount"}`))
	})
}

func TestStoreUnavailable(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		t.Run("AutoMode", func(t *testing.T) {
			t.Parallel()
			b := setup(t, backend)
			c := b.anon()
			tk := c.CreateTitled(t, "before the outage")
			require.NoError(t, b.Store.Close())

			for _, q := range []struct {
				query string
				vars  map[string]any
			}{
				{`{ tasks { edges { node { id } } } }`, nil},
				{`query($id: ID!) { task(id: $id) { id } }`, map[string]any{"id": tk.ID}},
				{`{ taskCount }`, nil},
				{apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "during the outage"}}},
				{apptest.TransitionMutation, map[string]any{"id": tk.ID, "to": "PLANNING"}},
			} {
				r := c.GQL(t, q.query, q.vars)
				require.NotEmptyf(t, r.Errors, "%s", r.Raw)
				for _, e := range r.Errors {
					apptest.RequireError(t, e, ipa.EUNAVAILABLE, ipa.ReasonStoreUnavailable)
				}
			}
			status, _ := b.Get(t, "/readyz")
			require.Equal(t, http.StatusServiceUnavailable, status)
			status, _ = b.Get(t, "/healthz")
			require.Equal(t, http.StatusOK, status, "liveness does not depend on the store")
			require.Positive(t, b.ErrorsSeen())
		})

		t.Run("RequiredMode", func(t *testing.T) {
			t.Parallel()
			b := setup(t, backend, apptest.WithAuthMode(auth.ModeRequired))
			_, secret := b.Mint(t, "alice", ipa.RoleOperator)
			c := b.as(secret)
			c.CreateTitled(t, "before the outage")
			require.NoError(t, b.Store.Close())

			// The token cannot be checked: the refusal says so, not "bad token".
			r := c.GQL(t, `{ taskCount }`, nil)
			require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s", r.Raw)
			require.Len(t, r.Errors, 1)
			apptest.RequireError(t, r.Errors[0], ipa.EUNAVAILABLE, ipa.ReasonStoreUnavailable)
			status, _ := b.Get(t, "/readyz")
			require.Equal(t, http.StatusServiceUnavailable, status)
		})
	})
}
