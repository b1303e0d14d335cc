package httpserver

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ipa-dev/ipa/internal/auth"
)

// A WebSocket connection is bound to its credential for its whole life:
// withAuth gives the upgrade request a wsHolder, wsInit opens an
// auth.Session from connection_init and keeps it there, every operation on
// the socket checks it again (sessionCheck), and when the credential stops
// being valid the session's context is cancelled, which closes the socket
// with 4403 (wsCloseCode).

// wsHolder carries one WebSocket connection's session from connection_init
// to the close and to every operation.
type wsHolder struct {
	upgradeAuth string // the upgrade request's Authorization header
	detached    bool   // the connection outlives the handler, and closes the session itself
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
