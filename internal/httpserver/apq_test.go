package httpserver_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// apqRequest is one request of the automatic persisted query protocol, as
// Apollo's persisted-query link sends it: the operation's sha256 in
// extensions.persistedQuery, with or without the query text.
type apqRequest struct {
	method    string // GET or POST
	query     string // "" sends the hash alone
	hash      string
	variables map[string]any
	token     string
}

func (c *client) apq(t *testing.T, r apqRequest) *gqlResponse {
	t.Helper()
	ext := map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": r.hash}}
	var hreq *http.Request
	var err error
	if r.method == http.MethodGet {
		q := url.Values{}
		extJSON, _ := json.Marshal(ext)
		q.Set("extensions", string(extJSON))
		if r.query != "" {
			q.Set("query", r.query)
		}
		if r.variables != nil {
			v, _ := json.Marshal(r.variables)
			q.Set("variables", string(v))
		}
		hreq, err = http.NewRequest(http.MethodGet, c.Bundle.URL+"/graphql?"+q.Encode(), nil)
		require.NoError(t, err)
	} else {
		body := map[string]any{"extensions": ext, "variables": r.variables}
		if r.query != "" {
			body["query"] = r.query
		}
		raw, _ := json.Marshal(body)
		hreq, err = http.NewRequest(http.MethodPost, c.Bundle.URL+"/graphql", bytes.NewReader(raw))
		require.NoError(t, err)
		hreq.Header.Set("Content-Type", "application/json")
	}
	hreq.Header.Set("Accept", "application/json")
	if c.Token != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.Bundle.Srv.Client().Do(hreq)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := &gqlResponse{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	require.NoErrorf(t, json.Unmarshal(raw, out), "body: %s", raw)
	c.Bundle.Record(out.Errors)
	return out
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// requireNotFound requires the answer Apollo's link waits for to resend the
// query: one error whose message is PersistedQueryNotFound.
func requireNotFound(t *testing.T, r *gqlResponse) {
	t.Helper()
	require.Equalf(t, http.StatusOK, r.Status, "body: %s", r.Raw)
	require.Lenf(t, r.Errors, 1, "body: %s", r.Raw)
	require.Equal(t, "PersistedQueryNotFound", r.Errors[0].Message)
	require.Equal(t, "PERSISTED_QUERY_NOT_FOUND", r.Errors[0].Code())
	require.Contains(t, []string{"", "null"}, string(r.Data), "no data without a query")
}

// TestPersistedQueries walks the wire flow of an Apollo client with
// automatic persisted queries and GET for hashed queries: the hash alone
// first (PersistedQueryNotFound), then hash and query (data, and the server
// learns it), then the hash alone again (data).
func TestPersistedQueries(t *testing.T) {
	b := setup(t, "sqlite")
	_, viewer := b.Mint(t, "reader", ipa.RoleViewer)
	_, operator := b.Mint(t, "writer", ipa.RoleOperator)
	c := b.as(viewer)
	made := b.as(operator).Create(t, map[string]any{"title": "persisted"})

	const query = `query TaskTitle($id: ID!) { task(id: $id) { id title } }`
	hash := sha256Hex(query)
	vars := map[string]any{"id": made.ID}
	wantData := `{"task":{"id":"` + made.ID + `","title":"persisted"}}`

	t.Run("GET", func(t *testing.T) {
		requireNotFound(t, c.apq(t, apqRequest{method: http.MethodGet, hash: hash, variables: vars}))

		r := c.apq(t, apqRequest{method: http.MethodGet, hash: hash, query: query, variables: vars})
		require.Emptyf(t, r.Errors, "body: %s", r.Raw)
		require.JSONEq(t, wantData, string(r.Data))

		r = c.apq(t, apqRequest{method: http.MethodGet, hash: hash, variables: vars})
		require.Emptyf(t, r.Errors, "body: %s", r.Raw)
		require.JSONEq(t, wantData, string(r.Data))
		// Private to the caller: the answer depends on the credential.
		require.Equal(t, "private, no-cache", r.Header.Get("Cache-Control"), "%v", r.Header)
		require.Contains(t, r.Header.Values("Vary"), "Authorization")
	})

	t.Run("POST", func(t *testing.T) {
		const q = `query Count { taskCount }`
		h := sha256Hex(q)
		requireNotFound(t, c.apq(t, apqRequest{method: http.MethodPost, hash: h}))
		r := c.apq(t, apqRequest{method: http.MethodPost, hash: h, query: q})
		require.Emptyf(t, r.Errors, "body: %s", r.Raw)
		require.JSONEq(t, `{"taskCount":1}`, string(r.Data))
		r = c.apq(t, apqRequest{method: http.MethodPost, hash: h})
		require.Emptyf(t, r.Errors, "body: %s", r.Raw)
		require.JSONEq(t, `{"taskCount":1}`, string(r.Data))
		require.Empty(t, r.Header.Get("Cache-Control"), "POST answers are never cacheable anyway")
	})

	t.Run("LearnedOverPOSTServedOverGET", func(t *testing.T) {
		const q = `query Me { viewer { id role } }`
		h := sha256Hex(q)
		require.Empty(t, c.apq(t, apqRequest{method: http.MethodPost, hash: h, query: q}).Errors)
		r := c.apq(t, apqRequest{method: http.MethodGet, hash: h})
		require.Emptyf(t, r.Errors, "body: %s", r.Raw)
		require.JSONEq(t, `{"viewer":{"id":"reader","role":"VIEWER"}}`, string(r.Data))
	})

	t.Run("MutationByHash", func(t *testing.T) {
		const q = `mutation Make($input: CreateTaskInput!) { createTask(input: $input) { task { title createdBy } } }`
		h := sha256Hex(q)
		w := b.as(operator)
		in := map[string]any{"input": map[string]any{"title": "by hash"}}
		requireNotFound(t, w.apq(t, apqRequest{method: http.MethodPost, hash: h, variables: in}))
		r := w.apq(t, apqRequest{method: http.MethodPost, hash: h, query: q, variables: in})
		require.Emptyf(t, r.Errors, "body: %s", r.Raw)
		r = w.apq(t, apqRequest{method: http.MethodPost, hash: h, variables: in})
		require.Emptyf(t, r.Errors, "body: %s", r.Raw)
		require.JSONEq(t, `{"createTask":{"task":{"title":"by hash","createdBy":"writer"}}}`, string(r.Data))
		// A known mutation hash over GET is still refused: GET is for queries.
		r = w.apq(t, apqRequest{method: http.MethodGet, hash: h, variables: in})
		require.Equal(t, http.StatusMethodNotAllowed, r.Status)
		// The hash is known to every caller, but the role still decides.
		r = c.apq(t, apqRequest{method: http.MethodPost, hash: h, variables: in})
		require.Len(t, r.Errors, 1)
		require.Equal(t, "FORBIDDEN", r.Errors[0].Code())
	})

	t.Run("HashMismatch", func(t *testing.T) {
		r := c.apq(t, apqRequest{method: http.MethodPost, hash: sha256Hex("something else"), query: `{ taskCount }`})
		require.Len(t, r.Errors, 1)
		require.Equal(t, ipa.EINVALID, r.Errors[0].Code())
		require.Equal(t, ipa.ReasonInvalidArgument, r.Errors[0].Reason())
		require.Contains(t, r.Errors[0].Message, "hash does not match")
		// The wrong hash was not learned.
		requireNotFound(t, c.apq(t, apqRequest{method: http.MethodPost, hash: sha256Hex("something else")}))
	})

	t.Run("NoTokenNoAnswer", func(t *testing.T) {
		// The hash alone opens nothing: authentication comes first.
		r := b.anon().apq(t, apqRequest{method: http.MethodGet, hash: hash, variables: vars})
		require.Equal(t, http.StatusUnauthorized, r.Status)
		require.Equal(t, "UNAUTHENTICATED", r.Errors[0].Code())
	})
}
