// Package wstransport is the GraphQL WebSocket transport: how /graphql
// serves GraphQL over a WebSocket, for gqlgen, in both subprotocols
// (graphql-transport-ws, and the older graphql-ws of
// subscriptions-transport-ws), built for many long-lived subscriptions.
//
// What it does differently from gqlgen's own WebSocket transport, and why:
//
//   - One goroutine per connection, reading it. A subscription whose resolver
//     hands its feed to a cohort (package cohort) has no goroutine of its
//     own: the cohort executes each event once and writes the encoded frame
//     to every member's connection. Other operations run in a goroutine each,
//     as long as they run.
//   - Frames are built from encoded data as it is: a member's frame is the
//     cohort's payload with the member's id around it, never decoded and
//     encoded again.
//   - Every frame goes through the connection's bounded sendQueue, which
//     writes whatever is ready in one system call; a cohort never waits for a
//     member's connection (TryWriteFrame) but moves it to catch-up instead.
//   - The connection outlives the upgrade request's handler: the handler
//     returns after the upgrade, so net/http's per-connection goroutine and
//     buffers go with it.
package wstransport

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/coder/websocket"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ipa-dev/ipa/internal/cohort"
)

// The subprotocols, newest first.
const (
	SubprotocolTransportWS = "graphql-transport-ws"
	SubprotocolGraphQLWS   = "graphql-ws"
)

// Close codes of graphql-transport-ws.
const (
	CloseBadRequest        = 4400
	CloseUnauthorized      = 4401
	CloseForbidden         = 4403
	CloseInitTimeout       = 4408
	CloseSubscriberExists  = 4409
	CloseTooManyInitialise = 4429
)

// InitFunc authenticates a connection from its connection_init payload. It
// returns the context the connection's operations run in, or a close code
// (4401, 4403…) and the error to close with.
type InitFunc func(ctx context.Context, payload map[string]any) (context.Context, int, error)

// Config configures a Transport.
type Config struct {
	Init InitFunc
	// InitTimeout closes a connection that sent no connection_init in time.
	InitTimeout time.Duration
	// KeepAlive is the interval of graphql-ws "ka" messages (0: none).
	KeepAlive time.Duration
	// ReadLimit bounds one message from the client, in bytes.
	ReadLimit int64
	// SendTimeout is how long a write to a client may make no progress
	// before the connection fails and is closed (0: 30 s). A subscriber
	// that stops reading for longer is cut off; one that reads, however
	// slowly, is not.
	SendTimeout time.Duration
	// Detach gives a connection the context it lives in once the upgrade's
	// handler has returned — the request's values, cancelled when the server
	// shuts down — and a function to call when the connection is over. Nil
	// keeps the request's values with no cancellation.
	Detach func(r *http.Request) (context.Context, func())
	// CloseCode is the close code and reason for a connection whose context
	// ended (a revoked credential, a shutdown). Nil: 1000 "terminated".
	CloseCode func(ctx context.Context) (int, string)
	// Authorize runs before each operation of an initialised connection.
	// A refusal (non-nil) ends the operation with an error message that
	// carries it — the client reads why, with its code — and then runs
	// then, if not nil (to close the connection, say): the close comes
	// after the error. Nil authorizes everything.
	Authorize func(ctx context.Context) (refusal *gqlerror.Error, then func())
	// EndError is the error each operation in flight is ended with, before
	// the close frame, when the connection's context ends; nil (or a nil
	// result) closes without one.
	EndError func(ctx context.Context) *gqlerror.Error
	// Cohorts drives the subscriptions that join a cohort.
	Cohorts *cohort.Cohorts
	Logger  *slog.Logger
}

// Transport is the gqlgen transport. Use New.
type Transport struct{ cfg Config }

var _ graphql.Transport = (*Transport)(nil)

// New returns the transport.
func New(cfg Config) *Transport {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Cohorts == nil {
		cfg.Cohorts = cohort.New()
	}
	return &Transport{cfg: cfg}
}

// Supports reports whether r asks for an upgrade.
func (t *Transport) Supports(r *http.Request) bool { return r.Header.Get("Upgrade") != "" }

// Do upgrades r and serves the connection; it returns once the connection
// is initialised, leaving it to a goroutine of its own.
func (t *Transport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	qw := &queuedWriter{ResponseWriter: w, timeout: t.cfg.SendTimeout}
	// Zero OriginPatterns: the library accepts an upgrade only from a page
	// of the same origin or from a client that sends no Origin.
	ws, err := websocket.Accept(qw, r, &websocket.AcceptOptions{
		Subprotocols:    []string{SubprotocolTransportWS, SubprotocolGraphQLWS},
		CompressionMode: websocket.CompressionDisabled, // frames are written raw (sendQueue)
	})
	if err != nil {
		return // the library has answered
	}
	if t.cfg.ReadLimit > 0 {
		ws.SetReadLimit(t.cfg.ReadLimit)
	}
	ctx, done := context.WithoutCancel(r.Context()), func() {}
	if t.cfg.Detach != nil {
		ctx, done = t.cfg.Detach(r)
	}
	newConn(t, ws, qw.q, qw.br, exec).serve(ctx, done)
}
