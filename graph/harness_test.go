package graph_test

// The API tests: queries, mutations and subscriptions as a client sees
// them, against a full server behind a real socket (apptest.Setup). The
// transports themselves (HTTP, SSE, WebSocket, limits) are tested in
// internal/httpserver.

import (
	"testing"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// forEachBackend runs fn as a parallel subtest per database.
func forEachBackend(t *testing.T, fn func(t *testing.T, backend string)) {
	t.Helper()
	dbtest.ForEach(t, fn)
}

// bundle is a full server behind a real socket (apptest.Setup), with this
// package's own helpers as methods.
type bundle struct{ *apptest.Bundle }

// setup builds the stack on a fresh database of backend and serves it.
func setup(t testing.TB, backend string, opts ...apptest.Option) *bundle {
	t.Helper()
	return &bundle{apptest.Setup(t, backend, opts...)}
}

// client talks GraphQL to a bundle as one caller.
type client struct{ *apptest.Client }

// anon is a client that sends no token (the local admin in auto mode with no
// token).
func (b *bundle) anon() *client { return &client{b.Anon()} }

// as returns a client sending the token.
func (b *bundle) as(token string) *client { return &client{b.As(token)} }

// The harness's types under the short names the tests use.
type (
	task        = apptest.Task
	event       = apptest.Event
	gqlError    = apptest.GQLError
	gqlResponse = apptest.Response
	request     = apptest.Request
	taskConn    = apptest.TaskConnection
	taskPage    = apptest.TaskPage
)
