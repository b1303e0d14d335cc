package httpserver

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/ipa-dev/ipa/internal/auth"
)

// Default connection limits of NewServer.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultBodyReadTimeout   = 30 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	maxHeaderBytes           = 64 << 10
)

// ServerOptions are the connection limits of the HTTP server. A zero field
// takes its default.
type ServerOptions struct {
	// ReadHeaderTimeout bounds reading the request line and headers.
	ReadHeaderTimeout time.Duration
	// BodyReadTimeout bounds reading the whole request body, counted from
	// the start of the request. It applies to every request with a body,
	// SSE subscriptions included.
	BodyReadTimeout time.Duration
	// WriteTimeout bounds an ordinary request from its start to the end of
	// its response. WebSocket upgrades and SSE streams (a POST with Accept:
	// text/event-stream) are exempt: a subscription lives as long as its
	// client wants it. A GET asking for text/event-stream is an ordinary
	// query, answered once, and keeps the limit.
	WriteTimeout time.Duration
	// IdleTimeout bounds a keep-alive connection's wait for its next request.
	IdleTimeout time.Duration
	// BaseContext is the parent of every request's context; nil means
	// context.Background.
	BaseContext func(net.Listener) context.Context
	// Logger receives the server's own errors (bad TLS, accept failures).
	Logger *slog.Logger
}

func (o ServerOptions) withDefaults() ServerOptions {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&o.BodyReadTimeout, DefaultBodyReadTimeout)
	def(&o.WriteTimeout, DefaultWriteTimeout)
	def(&o.IdleTimeout, DefaultIdleTimeout)
	return o
}

// NewServer returns the HTTP server for handler with the connection limits
// of o.
//
// http.Server's own ReadTimeout and WriteTimeout are left unset on purpose:
// they are deadlines on the connection, which would also cut off a
// WebSocket after its upgrade and an SSE stream. The deadlines are set per
// request instead (see withDeadlines).
func NewServer(handler http.Handler, o ServerOptions) *http.Server {
	o = o.withDefaults()
	base := o.BaseContext
	if base == nil {
		base = func(net.Listener) context.Context { return context.Background() }
	}
	srv := &http.Server{
		Handler:           withDeadlines(handler, o),
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(l net.Listener) context.Context { return withBaseContext(base(l)) },
		// Who owns each connection is asked of the kernel at most once per
		// connection, when the anonymous local door needs to know.
		ConnContext: auth.ConnContext,
	}
	if o.Logger != nil {
		srv.ErrorLog = slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn)
	}
	return srv
}

// withDeadlines gives each request its read deadline for the body and, unless
// it is a stream, its write deadline.
//
// A request without a body gets no read deadline: net/http is already
// reading the connection in the background to notice a client that goes
// away, and a deadline would end that read and cancel the request. A request
// with a body gets one until its body is read to the end; net/http clears it
// then, when its background read starts.
func withDeadlines(next http.Handler, o ServerOptions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isWebSocket(r) {
			// Its message size and init timeout are the transport's; a
			// deadline here would stay on the connection after the upgrade.
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rc := http.NewResponseController(w)
		if !isSSE(r) {
			_ = rc.SetWriteDeadline(start.Add(o.WriteTimeout))
		}
		if r.Body != nil && r.Body != http.NoBody {
			_ = rc.SetReadDeadline(start.Add(o.BodyReadTimeout))
		}
		next.ServeHTTP(w, r)
	})
}
