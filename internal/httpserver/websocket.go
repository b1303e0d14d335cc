package httpserver

import (
	"context"
	"github.com/99designs/gqlgen/graphql/handler/transport"

	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// WebSocket close codes for a refused connection_init, as graphql-ws uses them.
const (
	closeUnauthorized = 4401
	closeForbidden    = 4403
)

// The WebSocket implementation (coder/websocket, gqlgen's default) accepts an
// upgrade only from a page of the same origin or from a client that sends no
// Origin, so a page on another site cannot ride on a loopback server's open
// door.

// wsInit authenticates a WebSocket connection from its connection_init
// payload ({"Authorization": "Bearer …"}), or from the upgrade request's
// header when it had one, and binds the connection to that credential (see
// sessions.go). A refusal closes the socket with 4401 (no or bad token) or
// 4403 (role not allowed).
func wsInit(a *auth.Authenticator) transport.WebsocketInitFunc {
	return func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
		h := wsHolderFrom(ctx)
		header := p.Authorization()
		if header == "" {
			if v, ok := p["authorization"].(string); ok {
				header = v
			}
		}
		if header == "" && h != nil {
			header = h.upgradeAuth
		}
		if h == nil { // not through withAuth: nothing would close a session
			actor, err := a.Authenticate(ctx, header)
			if err != nil {
				return transport.WithWebsocketCloseCode(ctx, closeUnauthorized), nil, err
			}
			return checkViewer(ipa.WithActor(ctx, actor), actor)
		}
		ctx, sess, err := a.Open(ctx, header)
		if err != nil {
			return transport.WithWebsocketCloseCode(ctx, closeUnauthorized), nil, err
		}
		h.sess.Store(sess)
		return checkViewer(ctx, sess.Actor())
	}
}

func checkViewer(ctx context.Context, actor ipa.Actor) (context.Context, *transport.InitPayload, error) {
	if !actor.Role.Allows(ipa.RoleViewer) {
		return transport.WithWebsocketCloseCode(ctx, closeForbidden), nil,
			ipa.Errorf(ipa.EFORBIDDEN, "", "Role %s may not subscribe.", actor.Role)
	}
	return ctx, nil, nil
}
