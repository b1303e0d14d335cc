package httpserver_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/httpserver"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// manyAliases returns a query of n aliases of field.
func manyAliases(n int, field string) string {
	var sb strings.Builder
	sb.WriteString("{")
	for i := range n {
		fmt.Fprintf(&sb, " a%d: %s", i, field)
	}
	sb.WriteString(" }")
	return sb.String()
}

func TestQueryCost(t *testing.T) {
	b := setup(t, "sqlite")
	c := b.anon()
	for i := range 3 {
		c.CreateTitled(t, fmt.Sprintf("cost %d", i))
	}
	alive := func(t *testing.T) {
		t.Helper()
		require.Equal(t, 3, c.Count(t, nil), "the server still answers")
	}
	// refused requires the request to be refused, before it ran, with code
	// (and reason), and returns the error.
	refused := func(t *testing.T, query string, vars map[string]any, code, reason string) gqlError {
		t.Helper()
		r := c.GQL(t, query, vars)
		require.Lenf(t, r.Errors, 1, "%.500s", r.Raw)
		apptest.RequireError(t, r.Errors[0], code, reason)
		require.NotEmpty(t, r.Errors[0].Extensions["correlationId"])
		requireNoData(t, r)
		return r.Errors[0]
	}
	passes := func(t *testing.T, query string, vars map[string]any) *gqlResponse {
		t.Helper()
		r := c.GQL(t, query, vars)
		require.Emptyf(t, r.Errors, "%.500s", r.Raw)
		require.Equal(t, http.StatusOK, r.Status)
		require.NotEmpty(t, r.Data)
		return r
	}

	t.Run("AliasAttack", func(t *testing.T) {
		// Five hundred full pages in one request: half a million rows.
		attack := manyAliases(500, `tasks(first: 1000) { edges { node { id title status pod { state } } } }`)
		start := time.Now()
		e := refused(t, attack, nil, "COMPLEXITY_LIMIT_EXCEEDED", "")
		took := time.Since(start)
		require.Contains(t, e.Message, fmt.Sprintf("which exceeds the limit of %d", httpserver.MaxComplexity))
		t.Logf("refused in %v", took)
		// Refused before anything is read; a generous bound for a loaded,
		// race-instrumented machine (it ran for 13.8 s before).
		require.Less(t, took, 3*time.Second)
		alive(t)
	})

	t.Run("Nested", func(t *testing.T) {
		e := refused(t, `{ tasks(first: 1000) { edges { node { events(first: 1000) { edges { node { id type } } } } } } }`, nil,
			"COMPLEXITY_LIMIT_EXCEEDED", "")
		require.Equal(t, fmt.Sprintf("operation has complexity %d, which exceeds the limit of %d",
			(1+(1+(1+(1+(1+(1+2)))*1000)))*1000, httpserver.MaxComplexity), e.Message)
		// Smaller pages of both pass.
		passes(t, `{ tasks(first: 100) { edges { node { events(first: 100) { edges { node { id type } } } } } } }`, nil)
	})

	t.Run("Variables", func(t *testing.T) {
		q := `query($n: Int) { tasks(first: $n) { edges { node { id events(first: $n) { totalCount edges { node { version } } } } } } }`
		var out struct {
			Tasks struct {
				Edges []struct{ Node struct{ ID string } }
			}
		}
		c.Must(t, q, map[string]any{"n": 50}, &out)
		require.Len(t, out.Tasks.Edges, 3)
		refused(t, q, map[string]any{"n": 1000}, "COMPLEXITY_LIMIT_EXCEEDED", "")
		// The argument defaults (tasks: 100, events: 100) count too.
		refused(t, manyAliases(3, `tasks { edges { node { events { edges { node { id } } } } } }`), nil, "COMPLEXITY_LIMIT_EXCEEDED", "")
	})

	t.Run("Fragments", func(t *testing.T) {
		q := `query($n: Int) { tasks(first: $n) { ...Page } }
			fragment Page on TaskConnection { edges { node { ...Events } } }
			fragment Events on Task { events(first: 1000) { edges { node { id } } } }`
		passes(t, q, map[string]any{"n": 10})
		refused(t, q, map[string]any{"n": 1000}, "COMPLEXITY_LIMIT_EXCEEDED", "")
		inline := `{ tasks(first: 1000) { edges { node { ... on Task { events(first: 1000) { totalCount } } } } } }`
		refused(t, inline, nil, "COMPLEXITY_LIMIT_EXCEEDED", "")
	})

	t.Run("Aliases", func(t *testing.T) {
		r := passes(t, manyAliases(httpserver.MaxAliases, `viewer { id }`), nil)
		require.Contains(t, string(r.Data), fmt.Sprintf(`"a%d"`, httpserver.MaxAliases-1))
		e := refused(t, manyAliases(httpserver.MaxAliases+1, `viewer { id }`), nil, ipa.EINVALID, ipa.ReasonInvalidArgument)
		require.Contains(t, e.Message, "aliased fields")
		// Counted across fragments, once per spread.
		var sb strings.Builder
		sb.WriteString(`{ viewer { ...V } again: viewer { ...V } } fragment V on Actor {`)
		for i := range 50 {
			fmt.Fprintf(&sb, " i%d: id", i)
		}
		sb.WriteString(" }")
		refused(t, sb.String(), nil, ipa.EINVALID, ipa.ReasonInvalidArgument)
	})

	t.Run("Introspection", func(t *testing.T) {
		// The IDE's query, and the one with every option, pass.
		for _, all := range []bool{false, true} {
			r := passes(t, httpserver.StandardIntrospectionQuery(all), nil)
			require.Contains(t, string(r.Data), `"queryType":{"name":"Query"}`)
			require.Contains(t, string(r.Data), `"name":"createTask"`)
		}
		passes(t, nested(httpserver.MaxIntrospectionDepth), nil)

		e := refused(t, nested(httpserver.MaxIntrospectionDepth+1), nil, ipa.EINVALID, ipa.ReasonInvalidArgument)
		require.Contains(t, e.Message, "introspection")
		refused(t, nested(1000), nil, ipa.EINVALID, ipa.ReasonInvalidArgument)

		// Shallow but wide: each alias repeats types × fields × fields.
		wide := `{ __schema { types {`
		for i := range 80 {
			wide += fmt.Sprintf(` f%d: fields { type { ofType { fields { name type { ofType { name kind } } } } } }`, i)
		}
		wide += ` } } }`
		refused(t, wide, nil, ipa.EINVALID, ipa.ReasonInvalidArgument)
		alive(t)
	})

	t.Run("OrdinaryQueries", func(t *testing.T) {
		// A full page of tasks with every field, pod and recent crashes.
		page := `{ tasks(first: 1000) { edges { cursor node { ` + apptest.TaskFields + `
			pod { state pid startedAt restarts nextAttemptAt live crashes { at exitCode signal reason uptimeMs } } } }
			pageInfo { hasNextPage endCursor } totalCount } }`
		passes(t, page, nil)
		var p apptest.TaskPage
		c.Must(t, apptest.TasksQuery, map[string]any{"first": 1000}, &p)
		require.Len(t, p.Tasks.Edges, 3)
		require.NotEmpty(t, c.Events(t, p.Tasks.Edges[0].Node.ID))
		passes(t, `{ activePods { id pod { state pid crashes { at reason } } } runtimes { name description } viewer { id role } }`, nil)
		// The end-to-end suite's reads (e2e/test/subscriptions.test.js).
		passes(t, `{ tasks(first: 1000) { totalCount edges { node { id version } } } }`, nil)
		passes(t, `query($id: ID!, $after: String) { task(id: $id) {
			events(first: 1000, after: $after) { edges { node { id version position type } } pageInfo { hasNextPage endCursor } }
			} }`, map[string]any{"id": p.Tasks.Edges[0].Node.ID, "after": nil})
		// Mutations pass one at a time and in small batches.
		passes(t, "mutation "+manyAliases(20, `createTask(input: {title: "batch"}) { task { `+apptest.TaskFields+` } }`), nil)
		require.Equal(t, 23, c.Count(t, nil))
	})
}

func TestResponseLimit(t *testing.T) {
	b := setup(t, "sqlite")
	c := b.anon()
	// Twenty tasks of about 128 KiB each: 2.6 MB per page.
	desc := strings.Repeat("d", ipa.MaxDescriptionBytes)
	meta := map[string]any{"m": strings.Repeat("m", ipa.MaxMetadataBytes-16)}
	for i := range 20 {
		c.Create(t, map[string]any{"title": fmt.Sprintf("big %d", i), "description": desc, "metadata": meta})
	}
	page := `tasks(first: 1000) { edges { node { description metadata } } }`

	r := c.GQL(t, manyAliases(1, page), nil)
	require.Empty(t, r.Errors)
	require.Greater(t, len(r.Data), 20*ipa.MaxDescriptionBytes)

	// Seven pages: over 16 MiB, though cheap by the cost estimate.
	r = c.GQL(t, manyAliases(7, page), nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.Lessf(t, len(r.Raw), 4096, "the data is not sent: %.300s", r.Raw)
	require.Len(t, r.Errors, 1)
	apptest.RequireError(t, r.Errors[0], "COMPLEXITY_LIMIT_EXCEEDED", "")
	require.Contains(t, r.Errors[0].Message, fmt.Sprintf("over the limit of %d", httpserver.MaxResponseBytes))
	require.NotEmpty(t, r.Errors[0].Extensions["correlationId"])
	require.Equal(t, r.Header.Get("X-Request-Id"), r.Extensions["correlationId"])
	requireNoData(t, r)

	// Counted like every other error; the server goes on.
	_, text := b.Get(t, "/metrics")
	require.Equal(t, 1.0, metricValue(t, text, `ipa_graphql_errors_total{code="COMPLEXITY_LIMIT_EXCEEDED"}`))
	require.Equal(t, 20, c.Count(t, nil))
}
