package securitytest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// leakMarkers must never appear in an error shown to a client unless the
// request itself contained them (error messages may quote the document).
var leakMarkers = []string{"SELECT", "INSERT", "UPDATE ", "DELETE FROM", "sql", "gorm", "pq:", ".go:", "/tmp", "goroutine", "panic"}

// fuzzSeeds are real operations of the schema, the attacks above and
// garbage; each is a document and its variables as JSON text.
var fuzzSeeds = [][2]string{
	{`{ viewer { id role } }`, ``},
	{`{ taskCount }`, `{}`},
	{`query($f: TaskFilter) { tasks(filter: $f, first: 10) { edges { cursor node { id title status phase pod { state } } } pageInfo { hasNextPage endCursor } totalCount } }`, `{"f": {"status": "ACTIVE"}}`},
	{`query($id: ID!) { task(id: $id) { id events(first: 5) { edges { node { id type data } } } } }`, `{"id": "not-an-id"}`},
	{`{ node(id: "VGFzazox") { id } runtimes { name description } activePods { id } }`, ``},
	{`mutation($in: CreateTaskInput!) { createTask(input: $in) { task { id version } } }`, `{"in": {"title": "fuzz", "metadata": {"k": [1, 2]}}}`},
	{`mutation($in: CreateTaskInput!) { createTask(input: $in) { task { id } } }`, `{"in": {"title": "x", "runtime": "exec", "runtimeConfig": {"command": ["id"]}, "autoStart": true}}`},
	{`mutation($id: ID!) { transitionPhase(taskId: $id, to: PLANNING) { task { phase } } }`, `{"id": "00000000-0000-0000-0000-000000000000"}`},
	{`mutation($id: ID!) { startPod(taskId: $id) { started } }`, `{"id": "' OR 1=1 --"}`},
	{`mutation { createToken(actorId: "mallory", role: ADMIN) { secret } }`, ``},
	{`mutation($id: ID!) { revokeToken(id: $id) { token { id } } }`, `{"id": 1}`},
	{`subscription { events(afterPosition: "0") { type } }`, ``},
	{`subscription($id: ID!) { taskEvents(taskId: $id, afterVersion: 0) { version } }`, `{"id": "x"}`},
	{`{ __schema { types { name fields { name } } } }`, ``},
	{manyAliases(500, `tasks(first: 1000) { edges { node { id title } } }`), ``},
	{`{ tasks(first: 1000) { edges { node { events(first: 1000) { edges { node { id } } } } } } }`, ``},
	{`query($n: Int) { tasks(first: $n) { totalCount } }`, `{"n": -1}`},
	{`query($n: Int) { tasks(first: $n) { totalCount } }`, `{"n": 99999999999999999999}`},
	{`{ tasks(after: "!!garbage cursor") { totalCount } }`, ``},
	{strings.Repeat(`{ task(id: "1") { `, 40) + strings.Repeat(`}`, 80), ``},
	{`{ viewer { ...F } } fragment F on Actor { ...F }`, ``},
	{`{`, ``},
	{``, `{"a": 1}`},
	{`query { viewer { id } } query { viewer { id } }`, ``},
	{"\x00\xff\xfe", `not json`},
	{`{ viewer { id } }`, `[1, 2`},
	{`{ viewer { id } }`, `"a string"`},
}

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

// FuzzGraphQLRequest sends arbitrary documents and variables through the
// real handler, as an admin (so every resolver is reachable), and requires
// every answer to be JSON, every error to carry extensions.code, no error to
// name SQL, a driver, a file or a stack, and no 500. One server (on SQLite)
// serves a whole fuzz process. Run it longer with
//
//	go test -run '^$' -fuzz '^FuzzGraphQLRequest$' -fuzztime 10m ./internal/securitytest/
func FuzzGraphQLRequest(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s[0], s[1])
	}
	a := apptest.New(f, dbtest.URL(f, "sqlite"), auth.ModeRequired, nil)
	_, secret, err := auth.Mint(context.Background(), a.Store, "fuzz", ipa.RoleAdmin, time.Now())
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, query, variables string) {
		body, err := json.Marshal(map[string]string{"query": query})
		if err != nil {
			t.Fatal(err)
		}
		if variables != "" {
			// Spliced in verbatim: invalid JSON exercises the body decoder.
			body = append(append(body[:len(body)-1], `,"variables":`...), variables+"}"...)
		}
		req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(string(body)))
		req.Host = "localhost"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+secret)
		ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
		defer cancel()
		rec := httptest.NewRecorder()
		a.Handler.ServeHTTP(rec, req.WithContext(ctx))

		raw := rec.Body.Bytes()
		if rec.Code >= 500 {
			t.Fatalf("status %d: %s", rec.Code, raw)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.Contains(ct, "json") {
			t.Fatalf("status %d, Content-Type %q: %.500s", rec.Code, ct, raw)
		}
		var resp struct {
			Errors []gqlError `json:"errors"`
		}
		if err := json.Unmarshal(raw, &resp); err != nil {
			t.Fatalf("status %d, not JSON (%v): %.500s", rec.Code, err, raw)
		}
		if rec.Code != http.StatusOK && len(resp.Errors) == 0 {
			t.Fatalf("status %d without an error: %.500s", rec.Code, raw)
		}
		input := string(body)
		for _, e := range resp.Errors {
			if e.code() == "" {
				t.Fatalf("an error without extensions.code: %.500s", raw)
			}
			text, _ := json.Marshal(e)
			for _, m := range leakMarkers {
				if strings.Contains(string(text), m) && !strings.Contains(input, m) {
					t.Fatalf("an error leaks internals (%q): %s", m, text)
				}
			}
		}
	})
}
