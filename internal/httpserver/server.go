// Package httpserver assembles the HTTP face of ipa: the GraphQL endpoint
// with its transports and limits, the IDE, the console, health, readiness and
// metrics.
package httpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/ipa-dev/ipa/graph"
	"github.com/ipa-dev/ipa/graph/generated"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/buildinfo"
	"github.com/ipa-dev/ipa/internal/cohort"
	"github.com/ipa-dev/ipa/internal/ide"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/ui"
	"github.com/ipa-dev/ipa/internal/wstransport"
)

// Limits a request must stay within. They are refused before any resolver runs.
const (
	MaxBodyBytes      = 1 << 20 // POST body
	MaxWSMessageBytes = 1 << 20 // one WebSocket message
	MaxQueryDepth     = 12
	// MaxComplexity bounds an operation's cost, which multiplies down the
	// tree by list sizes (cost.go): 1000 tasks with all their fields and
	// pods pass, 1000 tasks with 1000 events each do not.
	MaxComplexity = 100_000
	// PersistedQueries is how many automatic persisted queries (hash →
	// query text) the server remembers, least recently used first out. A
	// client whose hash fell out just sends the query again.
	PersistedQueries = 1000
)

// Config wires the server.
type Config struct {
	Resolver *graph.Resolver // the services behind the schema
	Auth     *auth.Authenticator
	Registry *prometheus.Registry // /metrics serves it
	Logger   *slog.Logger
	// Ready reports whether the server can serve: store reachable, supervisor
	// running. Nil means always ready.
	Ready func(ctx context.Context) error
	// RateLimit is the requests per second each caller (token, or remote
	// address without one) may send to /graphql; 0 means no limit.
	// RateBurst is the burst above it (0: the rate, at least 1).
	RateLimit float64
	RateBurst int
	// AllowedHosts are host names served while the anonymous local door is
	// open, besides loopback names and addresses.
	AllowedHosts []string
	// Cohorts shares the execution of identical subscriptions; nil makes
	// a set of its own.
	Cohorts *cohort.Cohorts
	// WebSocketSendTimeout is how long a write to a WebSocket client may
	// make no progress before its connection is closed (0: 30 s).
	WebSocketSendTimeout time.Duration
}

func (c Config) cohorts() *cohort.Cohorts {
	if c.Cohorts == nil {
		return cohort.New()
	}
	return c.Cohorts
}

// New returns the server's handler.
func New(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := newMetrics(cfg.Registry)
	gql := handler.New(generated.NewExecutableSchema(generated.Config{Resolvers: cfg.Resolver}))
	cohorts := cfg.cohorts()
	present := presentError(cfg.Logger, m)
	gql.AddTransport(wstransport.New(wstransport.Config{
		Init:        wsInit(cfg.Auth),
		InitTimeout: 10 * time.Second,
		KeepAlive:   15 * time.Second,
		ReadLimit:   MaxWSMessageBytes,
		SendTimeout: cfg.WebSocketSendTimeout,
		Detach:      wsDetach,
		CloseCode:   wsCloseCode,
		Authorize:   wsAuthorize(present),
		EndError:    wsEndError(present),
		Cohorts:     cohorts,
		Logger:      cfg.Logger,
	}))
	gql.AddTransport(transport.Options{})
	gql.AddTransport(transport.SSE{})
	gql.AddTransport(transport.GET{})
	gql.AddTransport(transport.POST{})
	queries := lru.New[*ast.QueryDocument](1000)
	gql.SetQueryCache(queries)
	gql.Use(newPersistedQueries())
	// After persisted queries, which put the query text in place; before
	// gqlgen parses and validates it. The budget goes first: it bounds what
	// every later check reads.
	gql.Use(documentBudget{cache: queries})
	gql.Use(textCheck{})
	gql.Use(extension.Introspection{})
	gql.Use(depthLimit{max: MaxQueryDepth})
	gql.Use(newCostLimit(MaxComplexity))
	gql.Use(responseLimit{max: MaxResponseBytes, present: present})
	gql.Use(m)
	gql.Use(graphqlTracing{})
	// A WebSocket operation's credential is checked (wsAuthorize) before
	// it is dispatched: a subscription joins its cohort only once its
	// credential is good (see package cohort).
	gql.Use(cohorts)
	gql.SetErrorPresenter(present)
	gql.SetRecoverFunc(recoverPanic(cfg.Logger))

	mux := http.NewServeMux()
	limiter := newRateLimiter(cfg.RateLimit, cfg.RateBurst)
	mux.Handle(ArtifactsPath, withCorrelation(withErrorMetrics(m, withRateLimit(limiter,
		withAuth(cfg.Auth, artifactsHandler(cfg.Resolver))))))
	mux.Handle("/graphql", withTraceContext(withCorrelation(withErrorMetrics(m, withRateLimit(limiter,
		withTransportGate(withGETCaching(withAuth(cfg.Auth, withBodyLimit(withRawText(gql))))))))))
	mux.Handle("/metrics", withCorrelation(withErrorMetrics(m, withMetricsAuth(cfg.Auth,
		promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{})))))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		// The build after "ok", so a probe or a person can tell which
		// binary answers without a token.
		_, _ = w.Write([]byte("ok " + buildinfo.Get().Short() + "\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if cfg.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := cfg.Ready(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte("not ready\n"))
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle(ui.Base, ui.Handler("/graphql"))
	mux.Handle("/", ide.Handler("/graphql"))
	return withHostCheck(cfg.Auth, cfg.AllowedHosts, refuseArtifactDotSegments(mux,
		withCorrelation(withErrorMetrics(m, http.HandlerFunc(dotSegmentRefusal)))))
}

// withGETCaching marks GraphQL answers to GET as private to the caller: each
// one depends on the caller's credential (its role decides what it may see)
// and holds live task state, so no shared cache may keep it, and a browser
// must ask again before reusing it. Persisted queries still make GET URLs
// short and stable; a deployment that wants a shared cache in front must key
// it on the credential and choose its own staleness.
func withGETCaching(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && !isWebSocket(r) && !isSSE(r) {
			w.Header().Set("Cache-Control", "private, no-cache")
			w.Header().Add("Vary", "Authorization")
		}
		next.ServeHTTP(w, r)
	})
}

// withCorrelation gives every request a correlation id — the client's
// X-Request-Id when it sends a sane one, else a new UUID — and echoes it.
func withCorrelation(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimSpace(r.Header.Get("X-Request-Id"))
		if id == "" || len(id) > 128 || strings.ContainsFunc(id, func(c rune) bool { return c < 0x21 || c > 0x7e }) {
			id = uuid.NewString()
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(ipa.WithCorrelationID(r.Context(), id)))
	})
}

// withAuth authenticates HTTP and SSE requests from the Authorization
// header. WebSocket upgrades authenticate in connection_init instead (an
// upgrade with a bad header is refused here, before it upgrades). SSE streams
// and WebSocket connections are bound to their credential: revoking it ends
// them (see sessions.go).
func withAuth(a *auth.Authenticator, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(auth.WithRemoteAddr(r.Context(), r.RemoteAddr))
		if r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		header := r.Header.Get("Authorization")
		note := rateNoteFrom(r.Context())
		refuse := func(err error) {
			status := http.StatusUnauthorized
			if ipa.ErrorCode(err) != ipa.EUNAUTHENTICATED {
				status = http.StatusServiceUnavailable
			} else {
				note.authFailed()
			}
			writeError(w, r, status, err)
		}
		switch {
		case isWebSocket(r):
			if header != "" {
				if _, err := a.Authenticate(r.Context(), header); err != nil {
					refuse(err)
					return
				}
			}
			h := &wsHolder{upgradeAuth: header}
			next.ServeHTTP(w, r.WithContext(withWSHolder(r.Context(), h)))
			if !h.detached { // else the connection closes it when it ends
				h.close()
			}
		case isSSE(r):
			ctx, sess, err := a.Open(r.Context(), header)
			if err != nil {
				refuse(err)
				return
			}
			defer sess.Close()
			if header != "" {
				note.authSucceeded()
			}
			next.ServeHTTP(&sseEndWriter{ResponseWriter: w, r: r, sess: sess}, r.WithContext(ctx))
		default:
			actor, err := a.Authenticate(r.Context(), header)
			if err != nil {
				refuse(err)
				return
			}
			if header != "" {
				note.authSucceeded()
			}
			next.ServeHTTP(w, r.WithContext(ipa.WithActor(r.Context(), actor)))
		}
	})
}

// withBodyLimit refuses bodies over MaxBodyBytes with 413 before reading them.
// Any other body is read up to the limit here, so an oversized chunked one is
// refused the same way, and one that does not arrive before the read deadline
// (see withDeadlines) gets 408, rather than failing inside the transport.
func withBodyLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tooLarge := func() {
			writeError(w, r, http.StatusRequestEntityTooLarge,
				ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "The request body is over %d bytes.", MaxBodyBytes))
		}
		if r.ContentLength > MaxBodyBytes {
			tooLarge()
			return
		}
		if r.Body != nil && r.Body != http.NoBody && !isWebSocket(r) {
			body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// The write deadline may be as near as the read one was;
				// the short answer gets a moment of its own.
				_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(5 * time.Second))
				w.Header().Set("Connection", "close")
				writeError(w, r, http.StatusRequestTimeout,
					ipa.Errorf(CodeRequestTimeout, "", "The request body did not arrive in time."))
				return
			}
			if err != nil {
				writeError(w, r, http.StatusBadRequest,
					ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "The request body could not be read."))
				return
			}
			if len(body) > MaxBodyBytes {
				tooLarge()
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		} else if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}

func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// writeError answers a request refused before GraphQL ran, in the GraphQL
// response shape so clients read it like any other error.
func writeError(w http.ResponseWriter, r *http.Request, status int, err error) {
	ext := map[string]any{"code": ipa.ErrorCode(err), "correlationId": ipa.CorrelationID(r.Context())}
	metricsFrom(r.Context()).countError(ext["code"])
	msg := "Internal server error."
	var e *ipa.Error
	if errors.As(err, &e) { // the store wraps its EUNAVAILABLE around the cause
		msg = e.Message
		if e.Reason != "" {
			ext["reason"] = e.Reason
		}
	}
	body, _ := json.Marshal(map[string]any{
		"errors":     []any{map[string]any{"message": msg, "extensions": ext}},
		"extensions": map[string]any{"correlationId": ipa.CorrelationID(r.Context())},
	})
	w.Header().Set("Content-Type", responseMediaType(r))
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ipa"`)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
