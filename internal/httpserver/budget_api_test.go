package httpserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket/wsjson"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// bomb is a fragment bomb: n+1 fragments, each spreading the one before it
// twice, about 2^n fields in a kilobyte.
func bomb(n int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "query { ...F%d }\nfragment F0 on Query { a: tasks { totalCount } b: tasks { totalCount } }\n", n)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&sb, "fragment F%d on Query { ...F%d x: task(id: \"1\") { ...F%d } }\n", i, i-1, i-1)
	}
	return sb.String()
}

// longStatusList is a TaskFilter variable whose status list has n items.
func longStatusList(n int) map[string]any {
	status := make([]any, n)
	for i := range status {
		status[i] = "ACTIVE"
	}
	return map[string]any{"f": map[string]any{"status": status}}
}

const filterQuery = `query($f: TaskFilter) { tasks(filter: $f) { totalCount } }`

// Every transport applies the document budget before gqlgen validates:
// POST, GET, Server-Sent Events, both WebSocket protocols and persisted
// queries refuse a fragment bomb with COMPLEXITY_LIMIT_EXCEEDED and a long
// list in the variables with BAD_USER_INPUT / INVALID_ARGUMENT, and no
// document in gqlgen's cache escapes the variables' check.
func TestDocumentBudgetOnEveryTransport(t *testing.T) {
	b := setup(t, "sqlite")
	_, secret := b.Mint(t, "vera", ipa.RoleViewer)
	c := b.as(secret)
	c.Must(t, `{ viewer { id } }`, nil, nil)
	type want struct{ code, reason, message string }
	bombRefusal := want{"COMPLEXITY_LIMIT_EXCEEDED", "", "selections"}
	listRefusal := want{ipa.EINVALID, ipa.ReasonInvalidArgument, `"$f.status" has 40000 items; the limit is 1000`}
	check := func(t *testing.T, errs []gqlError, raw []byte, w want) {
		t.Helper()
		require.Lenf(t, errs, 1, "%.500s", raw)
		apptest.RequireError(t, errs[0], w.code, w.reason)
		require.Contains(t, errs[0].Message, w.message)
	}

	t.Run("POST", func(t *testing.T) {
		r := c.GQL(t, bomb(40), nil)
		require.Less(t, r.Status, 500, "%s", r.Raw)
		check(t, r.Errors, r.Raw, bombRefusal)
		requireNoData(t, r)
		r = c.GQL(t, filterQuery, longStatusList(40_000))
		check(t, r.Errors, r.Raw, listRefusal)
		requireNoData(t, r)
	})

	t.Run("GET", func(t *testing.T) {
		r := c.Do(t, request{Method: http.MethodGet, Query: bomb(40)})
		check(t, r.Errors, r.Raw, bombRefusal)
		r = c.Do(t, request{Method: http.MethodGet, Query: filterQuery, Vars: longStatusList(2000)})
		check(t, r.Errors, r.Raw, want{ipa.EINVALID, ipa.ReasonInvalidArgument, `"$f.status" has 2000 items`})
	})

	t.Run("SSE", func(t *testing.T) {
		for _, tc := range []struct {
			query string
			vars  map[string]any
			w     want
		}{{bomb(40), nil, bombRefusal}, {filterQuery, longStatusList(40_000), listRefusal}} {
			body, err := json.Marshal(map[string]any{"query": tc.query, "variables": tc.vars})
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.URL+"/graphql", bytes.NewReader(body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "text/event-stream")
			req.Header.Set("Authorization", "Bearer "+secret)
			resp, err := b.Srv.Client().Do(req)
			require.NoError(t, err)
			raw, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			require.NoError(t, err)
			var payload struct{ Errors []gqlError }
			for _, line := range strings.Split(string(raw), "\n") {
				if data, ok := strings.CutPrefix(line, "data: "); ok && strings.Contains(data, "errors") {
					require.NoError(t, json.Unmarshal([]byte(data), &payload))
				}
			}
			check(t, payload.Errors, raw, tc.w)
		}
	})

	// ws sends one operation over a socket of subprotocol (start or
	// subscribe message) and returns the errors it is answered with.
	ws := func(t *testing.T, subprotocol, start, query string, vars map[string]any) []gqlError {
		t.Helper()
		conn := b.dialProto(t, subprotocol)
		writeRaw(t, conn, fmt.Sprintf(`{"type":"connection_init","payload":{"Authorization":"Bearer %s"}}`, secret))
		require.Equal(t, "connection_ack", readMsg(t, conn).Type)
		payload, err := json.Marshal(map[string]any{"query": query, "variables": vars})
		require.NoError(t, err)
		writeRaw(t, conn, fmt.Sprintf(`{"type":%q,"id":"1","payload":%s}`, start, payload))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for {
			var m wsMsg
			require.NoError(t, wsjson.Read(ctx, conn, &m))
			if m.ID != "1" {
				continue
			}
			var out struct{ Errors []gqlError }
			if m.Type == "error" {
				require.NoError(t, json.Unmarshal(m.Payload, &out.Errors))
			} else {
				require.NoError(t, json.Unmarshal(m.Payload, &out))
			}
			require.NotEmptyf(t, out.Errors, "%s %s", m.Type, m.Payload)
			return out.Errors
		}
	}
	for _, p := range []struct{ subprotocol, start string }{{"graphql-transport-ws", "subscribe"}, {"graphql-ws", "start"}} {
		t.Run(p.subprotocol, func(t *testing.T) {
			check(t, ws(t, p.subprotocol, p.start, bomb(40), nil), nil, bombRefusal)
			check(t, ws(t, p.subprotocol, p.start, filterQuery, longStatusList(40_000)), nil, listRefusal)
		})
	}

	t.Run("PersistedQuery", func(t *testing.T) {
		q := bomb(30)
		r := c.apq(t, apqRequest{method: http.MethodPost, query: q, hash: sha256Hex(q)})
		check(t, r.Errors, r.Raw, bombRefusal)
		// The text was remembered under its hash before the budget ran;
		// sent by hash alone it is refused the same way.
		r = c.apq(t, apqRequest{method: http.MethodGet, hash: sha256Hex(q)})
		check(t, r.Errors, r.Raw, bombRefusal)
	})

	t.Run("CachedDocument", func(t *testing.T) {
		// The document is parsed, validated and cached by its first use;
		// the variables of every later use are still checked.
		r := c.GQL(t, filterQuery, longStatusList(3))
		require.Emptyf(t, r.Errors, "%s", r.Raw)
		r = c.GQL(t, filterQuery, longStatusList(40_000))
		check(t, r.Errors, r.Raw, listRefusal)
		r = c.GQL(t, filterQuery, longStatusList(1000))
		require.Emptyf(t, r.Errors, "%s", r.Raw)
	})

	t.Run("LongListInDocument", func(t *testing.T) {
		statuses := strings.TrimSuffix(strings.Repeat("ACTIVE, ", 40_000), ", ")
		r := c.GQL(t, `{ tasks(filter: {status: [`+statuses+`]}) { totalCount } }`, nil)
		check(t, r.Errors, r.Raw, want{ipa.EINVALID, ipa.ReasonInvalidArgument, `"filter.status" has more than 1000 items; the limit is 1000`})
		// At the limit it runs.
		statuses = strings.TrimSuffix(strings.Repeat("ACTIVE, ", 1000), ", ")
		r = c.GQL(t, `{ tasks(filter: {status: [`+statuses+`]}) { totalCount } }`, nil)
		require.Emptyf(t, r.Errors, "%.300s", r.Raw)
	})
}
