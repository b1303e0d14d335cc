package httpserver

import (
	"context"
	"net/http"
	"time"

	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/wstransport"
)

// The WebSocket transport (package wstransport) accepts an upgrade only from a
// page of the same origin or from a client that sends no Origin, so a page
// on another site cannot ride on a loopback server's open door.

// wsInit authenticates a WebSocket connection from its connection_init
// payload ({"Authorization": "Bearer …"}), or from the upgrade request's
// header when it had one, and binds the connection to that credential (see
// sessions.go). A refusal closes the socket with 4401 (no or bad token) or
// 4403 (role not allowed).
func wsInit(a *auth.Authenticator) wstransport.InitFunc {
	return func(ctx context.Context, p map[string]any) (context.Context, int, error) {
		h := wsHolderFrom(ctx)
		header, _ := p["Authorization"].(string)
		if header == "" {
			header, _ = p["authorization"].(string)
		}
		if header == "" && h != nil {
			header = h.upgradeAuth
		}
		if h == nil { // not through withAuth: nothing would close a session
			actor, err := a.Authenticate(ctx, header)
			if err != nil {
				return ctx, wstransport.CloseUnauthorized, err
			}
			return checkViewer(ipa.WithActor(ctx, actor), actor)
		}
		ctx, sess, err := a.Open(ctx, header)
		if err != nil {
			if ipa.ErrorCode(err) == ipa.EUNAUTHENTICATED {
				// Counts against the upgrade's address, as over HTTP.
				rateNoteFrom(ctx).authFailed()
			}
			return ctx, wstransport.CloseUnauthorized, err
		}
		h.sess.Store(sess)
		return checkViewer(ctx, sess.Actor())
	}
}

func checkViewer(ctx context.Context, actor ipa.Actor) (context.Context, int, error) {
	if !actor.Role.Allows(ipa.RoleViewer) {
		return ctx, wstransport.CloseForbidden,
			ipa.Errorf(ipa.EFORBIDDEN, "", "Role %s may not subscribe.", actor.Role)
	}
	return ctx, 0, nil
}

// wsCloseCode closes a connection whose credential was revoked with 4403;
// the only other end of its context is the server shutting down, 1001
// ("going away": clients reconnect, to this server once it is back or to
// another one).
func wsCloseCode(ctx context.Context) (int, string) {
	if s := wsHolderFrom(ctx).session(); s != nil && s.Revoked() {
		return wstransport.CloseForbidden, "credential revoked"
	}
	return 1001, "server shutting down"
}

type baseContextKey struct{}

// withBaseContext lets a WebSocket connection find the server's base
// context, which is cancelled when the server shuts down.
func withBaseContext(base context.Context) context.Context {
	return context.WithValue(base, baseContextKey{}, base)
}

// wsDetach gives a WebSocket connection, which outlives its upgrade
// request's handler, the request's values in a context the server's
// shutdown ends, and moves the end of its session from the handler's return
// to the connection's.
func wsDetach(r *http.Request) (context.Context, func()) {
	var ctx context.Context = context.WithoutCancel(r.Context())
	if base, ok := r.Context().Value(baseContextKey{}).(context.Context); ok {
		ctx = detachedContext{base: base, values: r.Context()}
	}
	h := wsHolderFrom(r.Context())
	if h != nil {
		h.detached = true
	}
	return ctx, func() {
		if h != nil {
			h.close()
		}
	}
}

// detachedContext has the values of a request and the life of the server:
// its cancellation, deadline and error are the base context's. It costs a
// connection no context of its own to cancel: what derives from it (the
// session's context) registers with the base context directly.
type detachedContext struct {
	base   context.Context
	values context.Context
}

func (d detachedContext) Deadline() (time.Time, bool) { return d.base.Deadline() }
func (d detachedContext) Done() <-chan struct{}       { return d.base.Done() }
func (d detachedContext) Err() error                  { return d.base.Err() }

// Value looks in the base context first: besides the server's own values,
// that is where package context finds the cancellation to register with.
func (d detachedContext) Value(key any) any {
	if v := d.base.Value(key); v != nil {
		return v
	}
	return d.values.Value(key)
}
