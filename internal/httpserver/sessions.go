package httpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// A WebSocket connection is bound to its credential for its whole life:
// withAuth gives the upgrade request a wsHolder, wsInit opens an
// auth.Session from connection_init and keeps it there, every operation on
// the socket checks it again (wsAuthorize), and when the credential stops
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

// wsAuthorize authenticates a WebSocket connection's credential again
// before each of its operations, so a revoked token (or a shut anonymous
// door) runs nothing more even before its socket is closed. A refusal ends
// the operation with an error message carrying its code (UNAUTHENTICATED,
// or UNAVAILABLE when the store cannot say); only then is the session
// revoked, which closes the socket with 4403 after that message.
func wsAuthorize(present graphql.ErrorPresenterFunc) func(ctx context.Context) (*gqlerror.Error, func()) {
	return func(ctx context.Context) (*gqlerror.Error, func()) {
		s := wsHolderFrom(ctx).session()
		if s == nil || skipSocketRecheck.Load() {
			return nil, nil
		}
		err := s.Verify(ctx)
		if err == nil {
			return nil, nil
		}
		var then func()
		if ipa.ErrorCode(err) == ipa.EUNAUTHENTICATED {
			then = s.Revoke
		}
		return present(ctx, err), then
	}
}

// wsEndError is the error every operation in flight on a socket whose
// credential was revoked ends with, before the close (4403): the client
// reads the code, not only the close.
func wsEndError(present graphql.ErrorPresenterFunc) func(ctx context.Context) *gqlerror.Error {
	return func(ctx context.Context) *gqlerror.Error {
		s := wsHolderFrom(ctx).session()
		if s == nil || !s.Revoked() {
			return nil // the server shutting down: the close says it all
		}
		return present(ctx, s.Verify(ctx))
	}
}

// skipSocketRecheck turns wsAuthorize off, for the benchmark that measures
// what the per-operation check costs (export_test.go). Nothing else sets it.
var skipSocketRecheck atomic.Bool

// isSSE reports whether r asks for a Server-Sent Events stream. It decides
// as gqlgen's SSE transport does: a POST asking for text/event-stream. A GET
// with that Accept header is an ordinary query (gqlgen's GET transport
// answers it once), so it is no stream for authentication, caching or the
// write deadline either.
func isSSE(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

// sseEndWriter carries an SSE stream's response. When the stream's session
// was revoked, gqlgen's SSE transport ends the stream with a bare
// "event: complete"; this writer puts an "event: next" with the
// UNAUTHENTICATED error before it, so the client reads why its stream ended.
type sseEndWriter struct {
	http.ResponseWriter
	r    *http.Request
	sess *auth.Session
}

var sseComplete = []byte("event: complete\n\n")

func (w *sseEndWriter) Write(p []byte) (int, error) {
	if bytes.Equal(p, sseComplete) && w.sess.Revoked() {
		msg, code := "The credential is no longer valid.", ipa.EUNAUTHENTICATED
		var e *ipa.Error
		if errors.As(w.sess.Verify(w.r.Context()), &e) {
			msg, code = e.Message, e.Code
		}
		cid := ipa.CorrelationID(w.r.Context())
		b, _ := json.Marshal(map[string]any{
			"errors":     []any{map[string]any{"message": msg, "extensions": map[string]any{"code": code, "correlationId": cid}}},
			"extensions": map[string]any{"correlationId": cid},
		})
		metricsFrom(w.r.Context()).countError(code)
		_, _ = fmt.Fprintf(w.ResponseWriter, "event: next\ndata: %s\n\n", b)
	}
	return w.ResponseWriter.Write(p)
}

func (w *sseEndWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *sseEndWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
