package httpserver

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ipa-dev/ipa/internal/auth"
)

// A WebSocket connection is bound to its credential for its whole life:
// withAuth gives the upgrade request a wsHolder, wsInit opens an
// auth.Session from connection_init and keeps it there, every operation on
// the socket checks it again (sessionCheck), and when the credential stops
// being valid the session's context is cancelled, which makes gqlgen close
// the socket; revokedCloseConn turns that close into 4403.

// wsHolder carries one WebSocket connection's session from connection_init
// to the close and to every operation.
type wsHolder struct {
	upgradeAuth string // the upgrade request's Authorization header
	sess        atomic.Pointer[auth.Session]
}

type wsHolderKey struct{}

func withWSHolder(ctx context.Context, h *wsHolder) context.Context {
	return context.WithValue(ctx, wsHolderKey{}, h)
}

func wsHolderFrom(ctx context.Context) *wsHolder {
	h, _ := ctx.Value(wsHolderKey{}).(*wsHolder)
	return h
}

// session returns the connection's session, nil before connection_init.
func (h *wsHolder) session() *auth.Session {
	if h == nil {
		return nil
	}
	return h.sess.Load()
}

// close unregisters the session, if any, once the connection is over.
func (h *wsHolder) close() {
	if s := h.session(); s != nil {
		s.Close()
	}
}

// wsImplementation is gqlgen's coder/websocket adapter (zero options keep its
// same-origin check), writing through a bounded, coalescing sendQueue, with
// connections that close with 4403 once their credential was revoked and,
// on graphql-transport-ws, with 4409 on a subscribe reusing a live id.
type wsImplementation struct {
	transport.CoderWebsocketImplementation
}

func (i wsImplementation) Accept(w http.ResponseWriter, r *http.Request, opts transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	c, err := i.CoderWebsocketImplementation.Accept(queuedWriter{w}, r, opts) // frames go through a sendQueue
	if err != nil {
		return nil, err
	}
	if h := wsHolderFrom(r.Context()); h != nil {
		c = &revokedCloseConn{wrappedConn: wrappedConn{c}, h: h}
	}
	if c.Subprotocol() == subprotocolTransportWS {
		c = newUniqueOpsConn(c)
	}
	return c, nil
}

// revokedCloseConn closes with 4403 when the connection's credential was
// revoked, whatever code the transport chose (it closes a cancelled
// connection as a normal closure).
type revokedCloseConn struct {
	wrappedConn
	h *wsHolder
}

func (c *revokedCloseConn) WriteClose(code int, message string) error {
	if s := c.h.session(); s != nil && s.Revoked() {
		code, message = closeForbidden, "credential revoked"
	}
	return c.WebsocketConn.WriteClose(code, message)
}

// wrappedConn is a connection wrapped by one of ours: it passes on the
// optional abilities of the connection inside, which the transport finds by
// type assertion.
type wrappedConn struct {
	transport.WebsocketConn
}

func (c wrappedConn) SetReadLimit(limit int64) {
	if l, ok := c.WebsocketConn.(transport.WebsocketReadLimiter); ok {
		l.SetReadLimit(limit)
	}
}

func (c wrappedConn) SetReadDeadline(t time.Time) error {
	if d, ok := c.WebsocketConn.(transport.WebsocketReadDeadliner); ok {
		return d.SetReadDeadline(t)
	}
	return nil
}

// sessionCheck authenticates a WebSocket connection's credential again
// before each of its operations, so a revoked token (or a shut anonymous
// door) runs nothing more even before its socket is closed.
type sessionCheck struct {
	present graphql.ErrorPresenterFunc
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = sessionCheck{}

func (sessionCheck) ExtensionName() string                          { return "SessionCheck" }
func (sessionCheck) Validate(schema graphql.ExecutableSchema) error { return nil }

// skipSocketRecheck turns sessionCheck off, for the benchmark that measures
// what the per-operation check costs (export_test.go). Nothing else sets it.
var skipSocketRecheck atomic.Bool

func (e sessionCheck) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	s := wsHolderFrom(ctx).session()
	if s == nil || skipSocketRecheck.Load() {
		return next(ctx)
	}
	if err := s.Check(ctx); err != nil {
		return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{e.present(ctx, err)}})
	}
	return next(ctx)
}

// isSSE reports whether r asks for a Server-Sent Events stream (as gqlgen's
// SSE transport decides).
func isSSE(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}
