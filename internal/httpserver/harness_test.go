package httpserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app"
	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/httpserver"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// forEachBackend runs fn as a parallel subtest per database.
func forEachBackend(t *testing.T, fn func(t *testing.T, backend string)) {
	t.Helper()
	testdb.ForEach(t, fn)
}

// bundle is one full server, assembled by package app as ipa serve is,
// behind a real socket. Pod starts are refused (the test binary cannot run
// plugins); cmd/ipa tests the real binary with real pods.
type bundle struct {
	backend string
	app     *app.App
	dbURL   string
	store   *store.Store
	auth    *auth.Authenticator
	reg     *prometheus.Registry
	srv     *httptest.Server
	url     string // base URL, no trailing slash

	mu   sync.Mutex
	errs []gqlError // every GraphQL error any client of this bundle received
}

type setupOptions struct {
	mode         auth.Mode
	server       httpserver.ServerOptions
	rateLimit    float64
	rateBurst    int
	log          *slog.Logger
	allowedHosts []string
	dbURL        string
	wsSend       time.Duration
}

type setupOption func(*setupOptions)

func withAuthMode(m auth.Mode) setupOption { return func(o *setupOptions) { o.mode = m } }

// withServerOptions sets the connection limits of the server.
func withServerOptions(so httpserver.ServerOptions) setupOption {
	return func(o *setupOptions) { o.server = so }
}

// withRateLimit turns on the per-caller rate limit.
func withRateLimit(perSecond float64, burst int) setupOption {
	return func(o *setupOptions) { o.rateLimit, o.rateBurst = perSecond, burst }
}

// withLogger makes the server log to l instead of discarding.
func withLogger(l *slog.Logger) setupOption { return func(o *setupOptions) { o.log = l } }

// withAllowedHosts sets the server's --allowed-hosts.
func withAllowedHosts(h ...string) setupOption { return func(o *setupOptions) { o.allowedHosts = h } }

// withWebSocketSendTimeout sets how long a write to a WebSocket client may
// make no progress before its connection is closed.
func withWebSocketSendTimeout(d time.Duration) setupOption {
	return func(o *setupOptions) { o.wsSend = d }
}

// withDatabase serves an existing database (as a restarted server would)
// instead of a fresh one.
func withDatabase(url string) setupOption { return func(o *setupOptions) { o.dbURL = url } }

// setup builds the stack on a fresh database of backend and serves it. Every
// error response its clients see is checked for leaked internals when the
// test ends.
func setup(t testing.TB, backend string, opts ...setupOption) *bundle {
	t.Helper()
	o := setupOptions{mode: auth.ModeAuto}
	for _, f := range opts {
		f(&o)
	}
	dbURL := o.dbURL
	if dbURL == "" {
		dbURL = testdb.URL(t, backend)
	}
	a := apptest.New(t, dbURL, o.mode, func(c *app.Config) {
		c.RateLimit, c.RateBurst = o.rateLimit, o.rateBurst
		c.AllowedHosts = o.allowedHosts
		c.WebSocketSendTimeout = o.wsSend
		if o.log != nil {
			c.Logger = o.log
		}
	})
	// The same http.Server ipa serve runs (timeouts, deadlines), behind a
	// test listener.
	srv := httptest.NewUnstartedServer(a.Handler)
	srv.Config = httpserver.NewServer(a.Handler, o.server)
	srv.Start()
	t.Cleanup(srv.Close)

	b := &bundle{backend: backend, app: a, dbURL: dbURL, store: a.Store, auth: a.Auth, reg: a.Registry, srv: srv, url: srv.URL}
	t.Cleanup(func() { b.checkNoLeaks(t) })
	return b
}

// leakMarkers must never appear in an error shown to a client.
var leakMarkers = []string{"SELECT", "INSERT", "sql", "gorm", "pq:", "sqlite", ".go:", "/tmp", "goroutine", "panic"}

// checkNoLeaks asserts that no error the bundle's clients saw names SQL, a
// driver, a file, a stack or a panic.
func (b *bundle) checkNoLeaks(t testing.TB) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errs {
		raw, err := json.Marshal(e)
		require.NoError(t, err)
		text := string(raw)
		for _, m := range leakMarkers {
			require.NotContainsf(t, text, m, "an error shown to a client leaks internals: %s", text)
		}
	}
}

func (b *bundle) record(errs []gqlError) {
	if len(errs) == 0 {
		return
	}
	b.mu.Lock()
	b.errs = append(b.errs, errs...)
	b.mu.Unlock()
}

// errorsSeen returns how many GraphQL errors the bundle's clients received.
func (b *bundle) errorsSeen() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.errs)
}

// mint creates a token for actor with role and returns its secret.
func (b *bundle) mint(t *testing.T, actor string, role ipa.Role) (ipa.Token, string) {
	t.Helper()
	tok, secret, err := auth.Mint(context.Background(), b.store, actor, role, time.Now())
	require.NoError(t, err)
	return tok, secret
}

// headPosition is the global position of the last committed event.
func (b *bundle) headPosition(t *testing.T) int64 {
	t.Helper()
	p, err := b.store.HeadPosition(context.Background())
	require.NoError(t, err)
	return p
}

// client talks GraphQL to a bundle as one caller.
type client struct {
	b     *bundle
	token string // "" sends no Authorization header
}

// anon is a client that sends no token (the local admin in auto mode with no
// token).
func (b *bundle) anon() *client { return &client{b: b} }

// as returns a client sending the token.
func (b *bundle) as(token string) *client { return &client{b: b, token: token} }

type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path,omitempty"`
	Extensions map[string]any `json:"extensions,omitempty"`
}

func (e gqlError) code() string   { s, _ := e.Extensions["code"].(string); return s }
func (e gqlError) reason() string { s, _ := e.Extensions["reason"].(string); return s }

type gqlResponse struct {
	Status     int
	Header     http.Header
	Raw        []byte
	Data       json.RawMessage `json:"data"`
	Errors     []gqlError      `json:"errors"`
	Extensions map[string]any  `json:"extensions"`
}

// request is one HTTP request to /graphql.
type request struct {
	method  string // POST unless set
	query   string
	vars    map[string]any
	headers map[string]string
	body    []byte // raw POST body instead of {query, variables}
}

// do sends req and decodes the GraphQL response, whatever its status.
func (c *client) do(t *testing.T, req request) *gqlResponse {
	t.Helper()
	method := req.method
	if method == "" {
		method = http.MethodPost
	}
	var hreq *http.Request
	var err error
	switch method {
	case http.MethodGet:
		q := url.Values{"query": {req.query}}
		if req.vars != nil {
			v, err := json.Marshal(req.vars)
			require.NoError(t, err)
			q.Set("variables", string(v))
		}
		hreq, err = http.NewRequest(method, c.b.url+"/graphql?"+q.Encode(), nil)
		require.NoError(t, err)
	default:
		body := req.body
		if body == nil {
			body, err = json.Marshal(map[string]any{"query": req.query, "variables": req.vars})
			require.NoError(t, err)
		}
		hreq, err = http.NewRequest(method, c.b.url+"/graphql", bytes.NewReader(body))
		require.NoError(t, err)
		hreq.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range req.headers {
		hreq.Header.Set(k, v)
	}
	resp, err := c.b.srv.Client().Do(hreq)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := &gqlResponse{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(raw) > 0 && strings.Contains(resp.Header.Get("Content-Type"), "json") {
		require.NoErrorf(t, json.Unmarshal(raw, out), "response body: %s", raw)
	}
	c.b.record(out.Errors)
	return out
}

// gql posts query with vars.
func (c *client) gql(t *testing.T, query string, vars map[string]any) *gqlResponse {
	t.Helper()
	return c.do(t, request{query: query, vars: vars})
}

// must posts query, requires no error, and decodes data into out (if non-nil).
func (c *client) must(t *testing.T, query string, vars map[string]any, out any) {
	t.Helper()
	r := c.gql(t, query, vars)
	require.Emptyf(t, r.Errors, "unexpected errors: %s", r.Raw)
	require.Equal(t, http.StatusOK, r.Status)
	if out != nil {
		require.NoError(t, json.Unmarshal(r.Data, out))
	}
}

// fail posts query, requires exactly one error, and returns it.
func (c *client) fail(t *testing.T, query string, vars map[string]any) gqlError {
	t.Helper()
	r := c.gql(t, query, vars)
	require.Lenf(t, r.Errors, 1, "want exactly one error: %s", r.Raw)
	return r.Errors[0]
}

// requireError requires err to have code and, when reason is not "", reason.
func requireError(t *testing.T, e gqlError, code, reason string) {
	t.Helper()
	require.Equalf(t, code, e.code(), "error: %+v", e)
	if reason != "" {
		require.Equalf(t, reason, e.reason(), "error: %+v", e)
	}
	require.NotEmpty(t, e.Message)
}

// task is a Task as the tests read it.
type task struct {
	ID            string          `json:"id"`
	Title         string          `json:"title"`
	Description   *string         `json:"description"`
	Status        string          `json:"status"`
	Phase         string          `json:"phase"`
	Runtime       string          `json:"runtime"`
	RuntimeConfig json.RawMessage `json:"runtimeConfig"`
	Metadata      json.RawMessage `json:"metadata"`
	CreatedAt     time.Time       `json:"createdAt"`
	UpdatedAt     time.Time       `json:"updatedAt"`
	CreatedBy     string          `json:"createdBy"`
	Version       int             `json:"version"`
	RestartPolicy struct {
		AutoRestart      bool `json:"autoRestart"`
		MaxAttempts      int  `json:"maxAttempts"`
		WindowSeconds    int  `json:"windowSeconds"`
		InitialBackoffMs int  `json:"initialBackoffMs"`
		MaxBackoffMs     int  `json:"maxBackoffMs"`
	} `json:"restartPolicy"`
	Pod struct {
		State string `json:"state"`
	} `json:"pod"`
}

const taskFields = `id title description status phase runtime runtimeConfig metadata createdAt updatedAt createdBy version
	restartPolicy { autoRestart maxAttempts windowSeconds initialBackoffMs maxBackoffMs } pod { state }`

const createTaskMutation = `mutation($input: CreateTaskInput!) { createTask(input: $input) { task { ` + taskFields + ` } } }`

// create creates a task from input and returns it.
func (c *client) create(t *testing.T, input map[string]any) task {
	t.Helper()
	var out struct {
		CreateTask struct{ Task task } `json:"createTask"`
	}
	c.must(t, createTaskMutation, map[string]any{"input": input}, &out)
	require.NotEmpty(t, out.CreateTask.Task.ID)
	return out.CreateTask.Task
}

// createTitled creates a task with only a title.
func (c *client) createTitled(t *testing.T, title string) task {
	t.Helper()
	return c.create(t, map[string]any{"title": title})
}

// get reads a task, failing the test when it does not exist.
func (c *client) get(t *testing.T, id string) task {
	t.Helper()
	var out struct{ Task *task }
	c.must(t, `query($id: ID!) { task(id: $id) { `+taskFields+` } }`, map[string]any{"id": id}, &out)
	require.NotNilf(t, out.Task, "task %s not found", id)
	return *out.Task
}

// count returns taskCount for filter (nil: all tasks).
func (c *client) count(t *testing.T, filter map[string]any) int {
	t.Helper()
	var out struct{ TaskCount int }
	c.must(t, `query($f: TaskFilter) { taskCount(filter: $f) }`, map[string]any{"f": filter}, &out)
	return out.TaskCount
}

// event is an Event as the tests read it.
type event struct {
	ID            string          `json:"id"`
	TaskID        string          `json:"taskId"`
	Version       int             `json:"version"`
	Position      string          `json:"position"`
	Type          string          `json:"type"`
	Data          json.RawMessage `json:"data"`
	ActorID       *string         `json:"actorId"`
	CorrelationID *string         `json:"correlationId"`
	OccurredAt    time.Time       `json:"occurredAt"`
}

const eventFields = `id taskId version position type data actorId correlationId occurredAt`

// events returns all of a task's events, oldest first.
func (c *client) events(t *testing.T, id string) []event {
	t.Helper()
	var out struct {
		Task struct {
			Events struct {
				Edges []struct{ Node event }
			}
		}
	}
	c.must(t, `query($id: ID!) { task(id: $id) { events(first: 1000) { edges { node { `+eventFields+` } } } } }`,
		map[string]any{"id": id}, &out)
	evs := make([]event, len(out.Task.Events.Edges))
	for i, e := range out.Task.Events.Edges {
		evs[i] = e.Node
	}
	return evs
}

// get issues a plain GET to path and returns status and body.
func (b *bundle) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := b.srv.Client().Get(b.url + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}
