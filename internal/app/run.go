package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
)

// Run is `ipa serve`: it serves on ln — a listener the caller bound before
// anything else, so a port in use fails the start before the store is
// touched — while it builds the server (open, migrate, register, reconcile,
// resume), then with the server, until ctx ends. Until the server is built
// /readyz answers 503 and every request but /healthz is refused with 503
// (UNAVAILABLE). ready, when set, is called once the server serves. Returns
// New's errors, the listener's, or Close's.
func Run(ctx context.Context, cfg Config, ln net.Listener, ready func(*App)) error {
	a, err := prepare(cfg)
	if err != nil {
		return err
	}
	a.baseCtx, a.cancelBase = context.WithCancel(context.WithoutCancel(ctx))
	g := &gate{}
	srv, served := a.startHTTP(ln, g)
	if err := a.build(ctx); err != nil {
		_ = srv.Close()
		<-served
		return errors.Join(err, a.Close())
	}
	a.SetAddress(ctx, ln.Addr().String())
	g.open(a.Handler)
	if ready != nil {
		ready(a)
	}
	return a.serve(ctx, srv, served)
}

// gate is the HTTP face of a server still being built: alive, not ready.
// open lets every request through to the built server's handler.
type gate struct{ next atomic.Pointer[http.Handler] }

func (g *gate) open(h http.Handler) { g.next.Store(&h) }

// startingBody is the answer to a GraphQL request before the server is
// built: the code of an unreachable store, which is what a client retries.
var startingBody = fmt.Sprintf(`{"errors":[{"message":"The server is starting; try again shortly.","extensions":{"code":%q}}]}`+"\n", "UNAVAILABLE")

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := g.next.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	switch r.URL.Path {
	case "/healthz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	case "/readyz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(startingBody))
	}
}
