package apptest

// The API harness: a full server behind a real socket (Setup) and GraphQL
// clients of it, shared by the API tests beside package graph and the
// transport tests in internal/httpserver.

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
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/httpserver"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// Bundle is one full server, assembled by package app as ipa serve is,
// behind a real socket. Pod starts are refused (the test binary cannot run
// plugins); cmd/ipa tests the real binary with real pods.
type Bundle struct {
	Backend  string
	App      *app.App
	DBURL    string
	Store    *store.Store
	Auth     *auth.Authenticator
	Registry *prometheus.Registry
	Srv      *httptest.Server
	URL      string // base URL, no trailing slash

	mu   sync.Mutex
	errs []GQLError // every GraphQL error any client of this bundle received
}

type options struct {
	mode         auth.Mode
	server       httpserver.ServerOptions
	rateLimit    float64
	rateBurst    int
	log          *slog.Logger
	allowedHosts []string
	dbURL        string
	wsSend       time.Duration
}

// Option changes how Setup builds a server.
type Option func(*options)

// WithAuthMode sets the server's --auth mode (auto unless set).
func WithAuthMode(m auth.Mode) Option { return func(o *options) { o.mode = m } }

// WithServerOptions sets the connection limits of the server.
func WithServerOptions(so httpserver.ServerOptions) Option {
	return func(o *options) { o.server = so }
}

// WithRateLimit turns on the per-caller rate limit.
func WithRateLimit(perSecond float64, burst int) Option {
	return func(o *options) { o.rateLimit, o.rateBurst = perSecond, burst }
}

// WithLogger makes the server log to l instead of discarding.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithAllowedHosts sets the server's --allowed-hosts.
func WithAllowedHosts(h ...string) Option { return func(o *options) { o.allowedHosts = h } }

// WithWebSocketSendTimeout sets how long a write to a WebSocket client may
// make no progress before its connection is closed.
func WithWebSocketSendTimeout(d time.Duration) Option {
	return func(o *options) { o.wsSend = d }
}

// WithDatabase serves an existing database (as a restarted server would)
// instead of a fresh one.
func WithDatabase(url string) Option { return func(o *options) { o.dbURL = url } }

// Setup builds the stack on a fresh database of backend and serves it. Every
// error response its clients see is checked for leaked internals when the
// test ends.
func Setup(t testing.TB, backend string, opts ...Option) *Bundle {
	t.Helper()
	o := options{mode: auth.ModeAuto}
	for _, f := range opts {
		f(&o)
	}
	dbURL := o.dbURL
	if dbURL == "" {
		dbURL = dbtest.URL(t, backend)
	}
	a := New(t, dbURL, o.mode, func(c *app.Config) {
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

	b := &Bundle{Backend: backend, App: a, DBURL: dbURL, Store: a.Store, Auth: a.Auth, Registry: a.Registry, Srv: srv, URL: srv.URL}
	t.Cleanup(func() { b.CheckNoLeaks(t) })
	return b
}

// leakMarkers must never appear in an error shown to a client.
var leakMarkers = []string{"SELECT", "INSERT", "sql", "gorm", "pq:", "sqlite", ".go:", "/tmp", "goroutine", "panic"}

// CheckNoLeaks asserts that no error the Bundle's clients saw names SQL, a
// driver, a file, a stack or a panic.
func (b *Bundle) CheckNoLeaks(t testing.TB) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errs {
		raw, err := json.Marshal(e)
		require.NoError(t, err)
		text := string(raw)
		for _, m := range leakMarkers {
			require.NotContainsf(t, text, m, "an error shown to a Client leaks internals: %s", text)
		}
	}
}

// Record keeps errs, the GraphQL errors a client of b received, for the
// leak check when the test ends.
func (b *Bundle) Record(errs []GQLError) {
	if len(errs) == 0 {
		return
	}
	b.mu.Lock()
	b.errs = append(b.errs, errs...)
	b.mu.Unlock()
}

// ErrorsSeen returns how many GraphQL errors the bundle's clients received.
func (b *Bundle) ErrorsSeen() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.errs)
}

// Mint creates a token for actor with role and returns its secret.
func (b *Bundle) Mint(t *testing.T, actor string, role ipa.Role) (ipa.Token, string) {
	t.Helper()
	tok, secret, err := auth.Mint(context.Background(), b.Store, actor, role, time.Now())
	require.NoError(t, err)
	return tok, secret
}

// HeadPosition is the global position of the last committed event.
func (b *Bundle) HeadPosition(t *testing.T) int64 {
	t.Helper()
	p, err := b.Store.HeadPosition(context.Background())
	require.NoError(t, err)
	return p
}

// Client talks GraphQL to a Bundle as one caller.
type Client struct {
	Bundle *Bundle
	Token  string // "" sends no Authorization header
}

// Anon is a client that sends no token (the local admin in auto mode with no
// token).
func (b *Bundle) Anon() *Client { return &Client{Bundle: b} }

// As returns a client sending the token.
func (b *Bundle) As(token string) *Client { return &Client{Bundle: b, Token: token} }

// GQLError is one error of a GraphQL response.
type GQLError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path,omitempty"`
	Extensions map[string]any `json:"extensions,omitempty"`
}

// Error makes a GraphQL error a Go error: its reason and message.
func (e *GQLError) Error() string { return e.Reason() + ": " + e.Message }

// Code is the error's extensions.code.
func (e GQLError) Code() string { s, _ := e.Extensions["code"].(string); return s }

// Reason is the error's extensions.reason.
func (e GQLError) Reason() string { s, _ := e.Extensions["reason"].(string); return s }

// Response is a GraphQL response with its HTTP status, headers and body.
type Response struct {
	Status     int
	Header     http.Header
	Raw        []byte
	Data       json.RawMessage `json:"data"`
	Errors     []GQLError      `json:"errors"`
	Extensions map[string]any  `json:"extensions"`
}

// Request is one HTTP request to /graphql.
type Request struct {
	Method  string // POST unless set
	Query   string
	Vars    map[string]any
	Headers map[string]string
	Body    []byte // raw POST body instead of {query, variables}
}

// Do sends req and decodes the GraphQL response, whatever its status.
func (c *Client) Do(t *testing.T, req Request) *Response {
	t.Helper()
	method := req.Method
	if method == "" {
		method = http.MethodPost
	}
	var hreq *http.Request
	var err error
	switch method {
	case http.MethodGet:
		q := url.Values{"query": {req.Query}}
		if req.Vars != nil {
			v, err := json.Marshal(req.Vars)
			require.NoError(t, err)
			q.Set("variables", string(v))
		}
		hreq, err = http.NewRequest(method, c.Bundle.URL+"/graphql?"+q.Encode(), nil)
		require.NoError(t, err)
	default:
		body := req.Body
		if body == nil {
			body, err = json.Marshal(map[string]any{"query": req.Query, "variables": req.Vars})
			require.NoError(t, err)
		}
		hreq, err = http.NewRequest(method, c.Bundle.URL+"/graphql", bytes.NewReader(body))
		require.NoError(t, err)
		hreq.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for k, v := range req.Headers {
		hreq.Header.Set(k, v)
	}
	resp, err := c.Bundle.Srv.Client().Do(hreq)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := &Response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(raw) > 0 && strings.Contains(resp.Header.Get("Content-Type"), "json") {
		require.NoErrorf(t, json.Unmarshal(raw, out), "response body: %s", raw)
	}
	c.Bundle.Record(out.Errors)
	return out
}

// GQL posts query with vars.
func (c *Client) GQL(t *testing.T, query string, vars map[string]any) *Response {
	t.Helper()
	return c.Do(t, Request{Query: query, Vars: vars})
}

// Must posts query, requires no error, and decodes data into out (if non-nil).
func (c *Client) Must(t *testing.T, query string, vars map[string]any, out any) {
	t.Helper()
	r := c.GQL(t, query, vars)
	require.Emptyf(t, r.Errors, "unexpected errors: %s", r.Raw)
	require.Equal(t, http.StatusOK, r.Status)
	if out != nil {
		require.NoError(t, json.Unmarshal(r.Data, out))
	}
}

// Fail posts query, requires exactly one error, and returns it.
func (c *Client) Fail(t *testing.T, query string, vars map[string]any) GQLError {
	t.Helper()
	r := c.GQL(t, query, vars)
	require.Lenf(t, r.Errors, 1, "want exactly one error: %s", r.Raw)
	return r.Errors[0]
}

// RequireError requires err to have code and, when reason is not "", reason.
func RequireError(t *testing.T, e GQLError, code, reason string) {
	t.Helper()
	require.Equalf(t, code, e.Code(), "error: %+v", e)
	if reason != "" {
		require.Equalf(t, reason, e.Reason(), "error: %+v", e)
	}
	require.NotEmpty(t, e.Message)
}

// Task is a Task as the tests read it.
type Task struct {
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

// TaskFields are the fields of Task.
const TaskFields = `id title description status phase runtime runtimeConfig metadata createdAt updatedAt createdBy version
	restartPolicy { autoRestart maxAttempts windowSeconds initialBackoffMs maxBackoffMs } pod { state }`

// CreateTaskMutation creates a task from $input and returns its TaskFields.
const CreateTaskMutation = `mutation($input: CreateTaskInput!) { createTask(input: $input) { task { ` + TaskFields + ` } } }`

// TransitionMutation moves task $id to phase $to, expecting version $v
// (any when null), and returns its TaskFields.
const TransitionMutation = `mutation($id: ID!, $to: TaskPhase!, $v: Int) { transitionPhase(taskId: $id, to: $to, expectedVersion: $v) { task { ` + TaskFields + ` } } }`

// Create creates a task from input and returns it.
func (c *Client) Create(t *testing.T, input map[string]any) Task {
	t.Helper()
	var out struct {
		CreateTask struct{ Task Task } `json:"createTask"`
	}
	c.Must(t, CreateTaskMutation, map[string]any{"input": input}, &out)
	require.NotEmpty(t, out.CreateTask.Task.ID)
	return out.CreateTask.Task
}

// CreateTitled creates a task with only a title.
func (c *Client) CreateTitled(t *testing.T, title string) Task {
	t.Helper()
	return c.Create(t, map[string]any{"title": title})
}

// Get reads a task, failing the test when it does not exist.
func (c *Client) Get(t *testing.T, id string) Task {
	t.Helper()
	var out struct{ Task *Task }
	c.Must(t, `query($id: ID!) { task(id: $id) { `+TaskFields+` } }`, map[string]any{"id": id}, &out)
	require.NotNilf(t, out.Task, "task %s not found", id)
	return *out.Task
}

// Count returns taskCount for filter (nil: all tasks).
func (c *Client) Count(t *testing.T, filter map[string]any) int {
	t.Helper()
	var out struct{ TaskCount int }
	c.Must(t, `query($f: TaskFilter) { taskCount(filter: $f) }`, map[string]any{"f": filter}, &out)
	return out.TaskCount
}

// Event is an Event as the tests read it.
type Event struct {
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

// EventFields are the fields of Event.
const EventFields = `id taskId version position type data actorId correlationId occurredAt`

// Events returns all of a task's events, oldest first.
func (c *Client) Events(t *testing.T, id string) []Event {
	t.Helper()
	var out struct {
		Task struct {
			Events struct {
				Edges []struct{ Node Event }
			}
		}
	}
	c.Must(t, `query($id: ID!) { task(id: $id) { events(first: 1000) { edges { node { `+EventFields+` } } } } }`,
		map[string]any{"id": id}, &out)
	evs := make([]Event, len(out.Task.Events.Edges))
	for i, e := range out.Task.Events.Edges {
		evs[i] = e.Node
	}
	return evs
}

// Get issues a plain GET to path and returns status and body.
func (b *Bundle) Get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := b.Srv.Client().Get(b.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// ViewerResult is the answer to { viewer { id role } }.
type ViewerResult struct {
	Viewer struct{ ID, Role string }
}

// Viewer asks the server who the client is.
func (c *Client) Viewer(t *testing.T) ViewerResult {
	t.Helper()
	var v ViewerResult
	c.Must(t, `{ viewer { id role } }`, nil, &v)
	return v
}

// RequireUnauthenticated asserts the request was refused with 401 and
// UNAUTHENTICATED before anything ran.
func RequireUnauthenticated(t *testing.T, r *Response) {
	t.Helper()
	require.Equalf(t, http.StatusUnauthorized, r.Status, "%s", r.Raw)
	require.Len(t, r.Errors, 1)
	RequireError(t, r.Errors[0], ipa.EUNAUTHENTICATED, "")
	require.Contains(t, r.Header.Get("WWW-Authenticate"), "Bearer")
	require.Empty(t, r.Data)
}

// TaskConnection is a page of Query.tasks as the tests read it.
type TaskConnection struct {
	Edges []struct {
		Cursor string
		Node   Task
	}
	PageInfo struct {
		HasNextPage, HasPreviousPage bool
		StartCursor, EndCursor       *string
	}
	TotalCount int
}

// TaskPage is the answer to TasksQuery.
type TaskPage struct{ Tasks TaskConnection }

// TasksQuery reads a page of tasks: filter $f, order $o, $first after
// $after.
const TasksQuery = `query($f: TaskFilter, $o: TaskOrder, $first: Int, $after: String) {
	tasks(filter: $f, orderBy: $o, first: $first, after: $after) {
		edges { cursor node { ` + TaskFields + ` } }
		pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
		totalCount } }`

// Nodes are the page's tasks in order.
func (tc TaskConnection) Nodes() []Task {
	out := make([]Task, len(tc.Edges))
	for i, e := range tc.Edges {
		out[i] = e.Node
	}
	return out
}
