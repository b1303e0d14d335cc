// Package app assembles one ipa server from its parts, in the order data
// flows through them: store → live feed → event log writer → supervisor →
// services → HTTP. `ipa serve` and every test and benchmark harness build the
// server here, so there is one wiring, and Close takes it apart in the
// reverse order.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipa-dev/ipa/graph"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/cohort"
	"github.com/ipa-dev/ipa/internal/conversation"
	"github.com/ipa-dev/ipa/internal/coordination"
	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/feed"
	"github.com/ipa-dev/ipa/internal/httpserver"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/lifecycle"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/supervisor"
	"github.com/ipa-dev/ipa/internal/webhook"
)

// Config is everything a server is built from.
type Config struct {
	// DatabaseURL is sqlite://PATH or postgres://…; the store is opened and
	// migrated by New and closed by Close.
	DatabaseURL string
	// Runtimes are the runtimes offered, and Launcher how each plugin starts.
	Runtimes []ipa.Runtime
	Launcher supervisor.Launcher
	// DataDir holds pod working directories; made absolute by New.
	DataDir string
	// InstanceID names this server as the owner of its pod leases: stable
	// across restarts, unique among the servers on one database.
	InstanceID string
	// FormerInstanceIDs are ids this server ran under before (the default
	// id changed): at start-up it takes over its leases and pod commands
	// under them, and resumes the pods its shutdown under them stopped.
	FormerInstanceIDs []string
	// ResumePods starts again, before serving, the pods this instance's last
	// clean shutdown stopped (pod_started with trigger "resume"). It needs an
	// InstanceID: the pod_stopped events of a shutdown carry it.
	ResumePods    bool
	DefaultPolicy ipa.RestartPolicy // zero: ipa.DefaultRestartPolicy()
	AuthMode      auth.Mode         // "" is auth.ModeAuto
	// Loopback says the server listens on loopback addresses only (the
	// anonymous local admin is possible only then).
	Loopback bool
	// RateLimit is the requests per second each caller may send to
	// /graphql (0: no limit), RateBurst how many at once above it.
	RateLimit float64
	RateBurst int
	// HTTP sets the HTTP server's timeouts; zero fields take the defaults.
	HTTP httpserver.ServerOptions
	// WebSocketSendTimeout is how long a write to a WebSocket client may
	// make no progress before its connection is closed (0: 30 s).
	WebSocketSendTimeout time.Duration
	// AllowedHosts are host names served while the anonymous local door is
	// open, besides loopback names and addresses (DNS rebinding defence).
	AllowedHosts []string
	// MetricsAddr, when set, also serves /metrics alone, unauthenticated, on
	// that address (a private interface for the scraper).
	MetricsAddr string
	// ShutdownTimeout bounds Close: connections, then pods (gracefully, then
	// killed). Zero is 20 s.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger // default slog.Default()
	// Publish, when set, stands between the event log and the live feeds;
	// tests use it to delay or reorder commits on their way to subscribers.
	Publish func(eventlog.Publisher) eventlog.Publisher
	// Supervisor, when set, adjusts the supervisor's settings (timeouts,
	// intervals) before it is built; tests use it to make faults quick.
	Supervisor func(*supervisor.Config)
	// DeadlineInterval is how often passed task deadlines are looked for
	// (zero: 1 s).
	DeadlineInterval time.Duration

	// Several instances on one database (see internal/coordination). Version
	// is shown in Query.instances. HeartbeatInterval (default 2 s) and
	// LeaseTTL (default 10 s): an instance whose heartbeat is older than the
	// TTL is dead and its pods are taken over; plugins stop their work when
	// their host is silent for half the TTL. Handoff makes Close hand the
	// pods to other live instances instead of stopping them.
	Version           string
	HeartbeatInterval time.Duration
	LeaseTTL          time.Duration
	Handoff           bool
	// ExclusiveID refuses to start while another running server holds
	// InstanceID on the same PostgreSQL database (`ipa serve` sets it; see
	// store.HoldInstanceID).
	ExclusiveID bool
	// CommandWait bounds how long a stop or restart of a pod another
	// instance owns waits for that instance (zero: 15 s).
	CommandWait time.Duration
	// PluginEnv names server environment variables every plugin process
	// inherits besides the minimal set (--plugin-env; see
	// supervisor.PluginEnv): plugins get nothing else of the server's.
	PluginEnv []string
	// ArtifactMaxBytes and ArtifactMaxTaskBytes cap one artifact and all
	// of a task's; 0: artifact.DefaultMaxBytes, DefaultMaxTaskBytes.
	ArtifactMaxBytes, ArtifactMaxTaskBytes int64
	// SecretKey returns the webhook.KeySize-byte key that seals webhook
	// endpoint secrets at rest (--secret-key-file); every server on one
	// database needs the same. It is called once the store is open (the
	// default key file lives beside a SQLite store). Required.
	SecretKey func() ([]byte, error)
	// WebhookAllowPrivate lets webhook endpoints target loopback, private
	// and link-local addresses (--webhook-allow-private).
	WebhookAllowPrivate bool
	// Webhook, when set, adjusts the webhook deliverer's settings (back-off,
	// timeouts, lease) before it is built; tests use it to make retries quick.
	Webhook func(*webhook.Config)
}

// App is one assembled server. Build it with New, serve it with Serve (or
// mount Handler yourself), and take it apart with Close.
type App struct {
	cfg Config
	log *slog.Logger

	Store      *store.Store
	Broker     *feed.Broker
	Feed       *feed.Feed
	Writer     *eventlog.Writer
	Supervisor *supervisor.Supervisor
	Webhooks   *webhook.Deliverer
	Services   *graph.Resolver
	Auth       *auth.Authenticator
	Registry   *prometheus.Registry
	Handler    http.Handler
	// Cohorts groups the server's identical subscriptions (package cohort).
	Cohorts *cohort.Cohorts

	// Coord is this server among the instances sharing the database:
	// heartbeat, leases, takeover, pod command routing, drain.
	Coord *coordination.Coordinator
	// Conversations with pods, and their requests' expiry timer.
	Conversations *conversation.Service
	// Sched is this server's part of scheduling: concurrency limits and
	// the queue of pods waiting for a slot, decided in the store.
	Sched *coordination.Scheduler

	// baseCtx is the context of every request: cancelling it ends open
	// subscriptions, which http.Server.Shutdown alone would not.
	baseCtx    context.Context
	cancelBase context.CancelFunc

	// life holds the long-lived parts in the order they started; Close
	// stops them in reverse (see build).
	life lifecycle.Group
}

// New opens the store and builds every part on it, then reconciles the pods
// the previous server left (reattach, or record pod_lost). On error, what was
// built is taken apart again. Returns the store's errors (unreachable,
// migration) and configuration errors.
func New(ctx context.Context, cfg Config) (*App, error) {
	a, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	if err := a.build(ctx); err != nil {
		_ = a.Close()
		return nil, err
	}
	return a, nil
}

// prepare fills in cfg's defaults and checks it; nothing is opened yet.
func prepare(cfg Config) (*App, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AuthMode == "" {
		cfg.AuthMode = auth.ModeAuto
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 20 * time.Second
	}
	if cfg.DefaultPolicy == (ipa.RestartPolicy{}) {
		cfg.DefaultPolicy = ipa.DefaultRestartPolicy()
	}
	if cfg.Launcher == nil {
		return nil, errors.New("app: no runtime launcher")
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = coordination.DefaultHeartbeatInterval
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = coordination.DefaultLeaseTTL
	}
	if cfg.CommandWait == 0 {
		cfg.CommandWait = 15 * time.Second
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if err := (coordination.Config{Interval: cfg.HeartbeatInterval, TTL: cfg.LeaseTTL}).Validate(); err != nil {
		return nil, err
	}
	return &App{cfg: cfg, log: cfg.Logger}, nil
}

// Ready reports whether the server can serve: supervisor running, store
// reachable.
func (a *App) Ready(ctx context.Context) error {
	if !a.Supervisor.Running() {
		return errors.New("pod supervisor not running")
	}
	return a.Store.Ping(ctx)
}

// Serve serves HTTP on ln until ctx ends or the listener fails, then closes
// the App. Returns the listener's error, or Close's.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	srv, served := a.startHTTP(ln, a.Handler)
	return a.serve(ctx, srv, served)
}

// startHTTP serves h on ln in a goroutine of its own; served receives
// Serve's result.
func (a *App) startHTTP(ln net.Listener, h http.Handler) (*http.Server, chan error) {
	opts := a.cfg.HTTP
	opts.BaseContext = func(net.Listener) context.Context { return a.baseCtx }
	opts.Logger = a.log
	srv := httpserver.NewServer(h, opts)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	return srv, served
}

// serve runs the metrics listener beside srv until ctx ends or srv fails,
// then shuts srv down and closes the App.
func (a *App) serve(ctx context.Context, srv *http.Server, served chan error) error {
	if a.cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", a.cfg.MetricsAddr)
		if err != nil {
			_ = srv.Close()
			<-served
			return errors.Join(fmt.Errorf("metrics address: %w", err), a.Close())
		}
		msrv := httpserver.NewServer(httpserver.MetricsHandler(a.Registry), httpserver.ServerOptions{Logger: a.log})
		defer msrv.Close()
		go func() {
			if err := msrv.Serve(mln); !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("metrics listener stopped", "err", err)
			}
		}()
		a.log.Info("metrics served", "url", "http://"+mln.Addr().String()+"/metrics")
	}
	var serveErr error
	select {
	case serveErr = <-served:
	case <-ctx.Done():
		a.log.Info("shutting down: closing connections, then stopping pods")
		shutdownCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
		a.cancelBase()
		if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			a.log.Warn("http shutdown", "err", err)
		}
		cancel()
		serveErr = <-served
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return errors.Join(serveErr, a.Close())
}

// Close takes the server apart in the reverse order of its start: open
// subscriptions end, then the deadline and expiry timers, the
// conversations' background pod stops, the webhook workers, the handoff of
// pods (Config.Handoff), the scheduler and the instance's heartbeat; every
// pod is stopped (gracefully, then killed after the shutdown timeout), the
// commit listener stops, the instance id is let go of and the store is
// closed. (Serve has shut the HTTP server down before.) It is safe to call
// more than once; later calls return the first result: the pods' shutdown
// running out of time, or the store's close failing.
func (a *App) Close() error {
	if a.cancelBase != nil {
		a.cancelBase()
	}
	return a.life.Stop()
}

// SetAddress records the address this server listens on in its instance row.
func (a *App) SetAddress(ctx context.Context, addr string) {
	if err := a.Coord.SetAddress(ctx, addr); err != nil {
		a.log.Warn("instance address", "err", err)
	}
}

// notifyWebhooks publishes a commit to the live feeds, then wakes the
// webhook workers. Neither blocks.
type notifyWebhooks struct {
	next     eventlog.Publisher
	webhooks *webhook.Deliverer
}

func (n notifyWebhooks) Publish(c feed.Commit) {
	n.next.Publish(c)
	n.webhooks.Notify()
}
