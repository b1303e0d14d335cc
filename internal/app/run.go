package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Run is `ipa serve`: it serves on ln — a listener the caller bound before
// anything else, so a port in use fails the start before the store is
// touched — while it builds the server (open, migrate, register, reconcile,
// resume), then with the server, until ctx ends. Until the server is built
// /readyz answers 503 and every other request but /healthz waits for it
// (see gate). ready, when set, is called once the server serves. Returns
// New's errors, the listener's, or Close's.
func Run(ctx context.Context, cfg Config, ln net.Listener, ready func(*App)) error {
	a, err := prepare(cfg)
	if err != nil {
		return err
	}
	a.baseCtx, a.cancelBase = context.WithCancel(context.WithoutCancel(ctx))
	g := newGate(startWait)
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
// A request other than the probes waits for the build (up to startWait, or
// until its client gives up) and is then served, as if the listen backlog
// had held it; only a build that outlasts the wait answers 503. open lets
// every request through to the built server's handler.
type gate struct {
	wait   time.Duration
	next   atomic.Pointer[http.Handler]
	once   sync.Once
	opened chan struct{}
}

func newGate(wait time.Duration) *gate { return &gate{wait: wait, opened: make(chan struct{})} }

func (g *gate) open(h http.Handler) {
	g.next.Store(&h)
	g.once.Do(func() { close(g.opened) })
}

// startWait bounds how long a request made during the build waits for it.
// Migrations and reconcile take well under this; a longer build (a large
// migration, a store that is down) answers 503 and the client retries.
const startWait = 30 * time.Second

// startingBody is the answer to a GraphQL request whose wait for the build
// ran out: the code of an unreachable store, which is what a client retries.
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
		return
	case "/readyz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
		return
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case <-g.opened:
		(*g.next.Load()).ServeHTTP(w, r)
		return
	case <-r.Context().Done():
		return
	case <-t.C:
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(startingBody))
}
