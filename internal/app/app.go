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
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ipa-dev/ipa/graph"
	"github.com/ipa-dev/ipa/internal/artifact"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/cohort"
	"github.com/ipa-dev/ipa/internal/conversation"
	"github.com/ipa-dev/ipa/internal/coordination"
	"github.com/ipa-dev/ipa/internal/cursor"
	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/feed"
	"github.com/ipa-dev/ipa/internal/httpserver"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/runtimehost"
	"github.com/ipa-dev/ipa/internal/service"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/supervisor"
	"github.com/ipa-dev/ipa/internal/webhook"
	"github.com/ipa-dev/ipa/internal/workspace"
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

	stopListening context.CancelFunc
	listening     sync.WaitGroup

	stopDeadlinesFn context.CancelFunc
	deadlines       sync.WaitGroup

	// Coord is this server among the instances sharing the database:
	// heartbeat, leases, takeover, pod command routing, drain.
	Coord *coordination.Coordinator
	// Conversations with pods, and their requests' expiry timer.
	Conversations *conversation.Service
	expiry        *conversation.Expiry
	// Sched is this server's part of scheduling: concurrency limits and
	// the queue of pods waiting for a slot, decided in the store.
	Sched *coordination.Scheduler
	// schedPods is the pods as the services see them: scheduling in front
	// of the Router in front of the supervisor.
	schedPods *coordination.ScheduledPods

	// baseCtx is the context of every request: cancelling it ends open
	// subscriptions, which http.Server.Shutdown alone would not.
	baseCtx    context.Context
	cancelBase context.CancelFunc

	// releaseID lets go of the instance id (Config.ExclusiveID).
	releaseID func()

	closeOnce sync.Once
	closeErr  error
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

func (a *App) build(ctx context.Context) (err error) {
	cfg, log := a.cfg, a.log
	if a.baseCtx == nil {
		a.baseCtx, a.cancelBase = context.WithCancel(context.WithoutCancel(ctx))
	}

	// With an exclusive id, the id is held before the store is migrated:
	// a second server with the same id changes nothing.
	if a.Store, err = store.Open(ctx, cfg.DatabaseURL, store.Options{Logger: log, SkipMigrate: cfg.ExclusiveID}); err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	if cfg.ExclusiveID {
		if a.releaseID, err = a.Store.HoldInstanceID(ctx, cfg.InstanceID); err != nil {
			return err
		}
		if _, err := a.Store.Migrate(ctx); err != nil {
			return err
		}
	}
	if err := auth.CheckListen(ctx, a.Store, cfg.Loopback); err != nil {
		return err
	}
	sealer, err := a.prepareSecrets(ctx)
	if err != nil {
		return err
	}
	a.Registry = prometheus.NewRegistry()
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Outbound webhooks hear of every commit, local or from another
	// instance, to wake their workers; they start once the services exist.
	owner := cfg.InstanceID
	if owner == "" {
		owner = "process-" + uuid.NewString()
	}
	whCfg := webhook.Config{
		Store: a.Store, Owner: owner, AllowPrivate: cfg.WebhookAllowPrivate, Registry: a.Registry, Logger: log,
		Secrets: sealer,
	}
	if cfg.Webhook != nil {
		cfg.Webhook(&whCfg)
	}
	if a.Webhooks, err = webhook.New(whCfg); err != nil {
		return err
	}

	// Live feeds. Commits of other instances on the same PostgreSQL
	// database arrive as notices; SQLite has no other instances.
	a.Broker = feed.NewBroker()
	a.Feed = feed.NewFeed(a.Store, a.Broker, log)
	listenCtx, stop := context.WithCancel(a.baseCtx)
	a.stopListening = stop
	a.listening.Go(func() {
		a.Store.ListenCommits(listenCtx, func(n store.CommitNotice) {
			a.Broker.Publish(feed.Commit{TaskID: n.TaskID, Version: n.Version, Position: n.Position})
			a.Webhooks.Notify()
		}, func() {
			a.Broker.Resync()
			a.Webhooks.Notify()
		})
	})
	var pub eventlog.Publisher = notifyWebhooks{next: a.Broker, webhooks: a.Webhooks}
	if cfg.Publish != nil {
		pub = cfg.Publish(pub)
	}
	a.Writer = eventlog.NewWriter(a.Store, pub)
	a.Conversations = conversation.New(a.Store, a.Writer, a.Feed, log)

	// Pods.
	dataDir := cfg.DataDir
	if dataDir != "" {
		// Absolute, so plugins and leases do not depend on the working directory.
		if dataDir, err = filepath.Abs(dataDir); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	workspaces := workspace.New(dataDir)
	arts := artifact.New(artifact.Config{DataDir: dataDir, MaxBytes: cfg.ArtifactMaxBytes, MaxTaskBytes: cfg.ArtifactMaxTaskBytes,
		Record: recordArtifact(a.Writer), Read: a.Store})
	sweepWorkspaces(ctx, workspaces, arts, a.Store, log)
	// Scheduling: a pod lease is a slot, so the lease store tells the
	// scheduler when one frees.
	a.Sched = coordination.NewScheduler(coordination.SchedConfig{
		Store: a.Store, Recorder: eventlog.NewPodRecorder(a.Writer), ID: cfg.InstanceID, TTL: cfg.LeaseTTL, Logger: log,
		OnStart: a.schedMetrics(),
	})
	supCfg := supervisor.Config{
		Recorder:      eventlog.NewPodRecorder(a.Writer),
		History:       eventlog.NewPodHistory(a.Store),
		HostFactory:   runtimehost.Factory(a.Writer, a.Store, a.Conversations, arts, stagingDir(workspaces)),
		Launcher:      cfg.Launcher,
		DataDir:       dataDir,
		InstanceID:    cfg.InstanceID,
		Leases:        slotLeases{coordination.NewLeaseStore(a.Store, cfg.InstanceID), a.Sched},
		DefaultPolicy: cfg.DefaultPolicy,
		Logger:        log,
		Registry:      a.Registry,
		PluginEnv:     cfg.PluginEnv,
		Finished:      completeOnSuccess(a.Store, a.Writer, cfg.Runtimes, log),
	}
	if a.Store.Dialect() == "postgres" {
		// Other instances may take this one's pods over after the TTL: its
		// plugins stop their work when it has been silent for half of it
		// (the variable is set on each plugin, whatever the environment
		// says). SQLite has one instance: a plugin keeps its default grace
		// for the server to come back.
		supCfg.OrphanGrace = coordination.OrphanGrace(cfg.LeaseTTL)
	}
	if cfg.Supervisor != nil {
		cfg.Supervisor(&supCfg)
	}
	if a.Supervisor, err = supervisor.New(supCfg); err != nil {
		return err
	}
	if err := a.Supervisor.Start(ctx); err != nil {
		return err
	}
	if a.Coord, err = coordination.New(coordination.Config{
		Store: a.Store, Pods: a.Supervisor, ID: cfg.InstanceID, Version: cfg.Version,
		Interval: cfg.HeartbeatInterval, TTL: cfg.LeaseTTL, Logger: log,
	}); err != nil {
		return err
	}
	a.Sched.Attach(a.Supervisor)
	pods := a.Sched.Wrap(a.Coord.Router(a.Supervisor, cfg.CommandWait))
	a.schedPods = pods
	a.Conversations.SetPods(pods)

	// Services.
	key, err := a.Store.Secret(ctx, cursorSecretName, 32)
	if err != nil {
		return fmt.Errorf("cursor key: %w", err)
	}
	tasks, err := service.NewTaskService(service.TaskConfig{
		Store:         a.Store,
		History:       a.Store,
		Writer:        a.Writer,
		Pods:          pods,
		Cursors:       cursor.New(key),
		Runtimes:      cfg.Runtimes,
		DefaultPolicy: cfg.DefaultPolicy,
		Metrics:       service.NewMetrics(a.Registry),
		Logger:        log,
		Workspaces:    workspaces,
		Artifacts:     arts,
		Gates:         a.Conversations,
	})
	if err != nil {
		return err
	}
	podService := service.NewPodService(a.Store, pods, cfg.Runtimes)
	if a.Store.Dialect() == "postgres" {
		// Other instances may run this task's pod: answer it from the store.
		podService.ShareWith(cfg.InstanceID, a.Store, cfg.DefaultPolicy)
	}
	podService.SetWorkspaces(workspaces)
	podService.SetBudgets(a.Conversations)
	a.Services = &graph.Resolver{
		TaskService:         tasks,
		PodService:          podService,
		FeedService:         service.NewFeedService(a.Feed),
		TokenService:        service.NewTokenService(a.Store, log, nil),
		InstanceService:     service.NewInstanceService(a.Coord),
		ArtifactService:     service.NewArtifactService(a.Store, arts),
		ConversationService: service.NewConversationService(a.Conversations),
		WebhookService:      service.NewWebhookService(sealingStore{Store: a.Store, sealer: sealer}, a.Webhooks, webhook.NewSecret, log),
		SchedulingService:   service.NewSchedulingService(a.Store, a.Store),
	}
	// Registered (heartbeat fresh) before reconcile: no other instance
	// takes this one's leases over while it settles them.
	a.Store.WatchPodCommands(a.Coord.CommandQueued)
	a.Store.WatchPodCommandsDone(a.Coord.CommandDone)
	a.Store.WatchPodCommands(a.Sched.Heard)
	if err := a.Coord.Start(ctx); err != nil {
		return fmt.Errorf("register instance: %w", err)
	}
	for _, former := range cfg.FormerInstanceIDs {
		if err := a.Store.AdoptInstance(ctx, former, cfg.InstanceID); err != nil {
			return fmt.Errorf("adopt former instance id: %w", err)
		}
	}
	if err := a.reconcile(ctx, podService); err != nil {
		return fmt.Errorf("reconcile pods: %w", err)
	}
	// Queued pods whose place a dead server lost queue again (their
	// half-made starts were settled above, or by a takeover elsewhere).
	if now, err := a.Store.Now(ctx); err == nil {
		if n, err := a.Store.RequeueOrphans(ctx, cfg.InstanceID, now.Add(-cfg.LeaseTTL), now); err != nil {
			log.Warn("requeue orphaned queued pods", slog.Any("error", err))
		} else if n > 0 {
			log.Warn("queued pods that had lost their place queued again", slog.Int("pods", n))
			a.Sched.Kick()
		}
	}
	if cfg.ResumePods {
		if err := a.resume(ctx, podService); err != nil {
			return fmt.Errorf("resume pods: %w", err)
		}
	}
	a.Sched.Start(ctx)
	a.startDeadlines(cfg.DeadlineInterval)
	a.expiry = conversation.StartExpiry(a.baseCtx, a.Conversations, cfg.DeadlineInterval, log)
	a.Webhooks.Start()

	// HTTP.
	a.Auth = auth.New(a.Store, cfg.AuthMode, cfg.Loopback, auth.WithLogger(log))
	a.Cohorts = cohort.New()
	a.Handler = httpserver.New(httpserver.Config{
		Cohorts:      a.Cohorts,
		Resolver:     a.Services,
		Auth:         a.Auth,
		Registry:     a.Registry,
		Logger:       log,
		Ready:        a.Ready,
		RateLimit:    cfg.RateLimit,
		RateBurst:    cfg.RateBurst,
		AllowedHosts: cfg.AllowedHosts,

		WebSocketSendTimeout: cfg.WebSocketSendTimeout,
	})
	return nil
}

// cursorSecretName is the settings row holding the cursor signing key; it is
// shared by every instance on one database so cursors survive restarts and
// work across instances.
const cursorSecretName = "cursor-hmac-key"

// reconcile hands the supervisor the tasks whose stream says a pod runs or
// should run, so it reattaches to the plugins the previous server left or
// records what was lost.
func (a *App) reconcile(ctx context.Context, pods *service.PodService) error {
	targets, err := pods.PodTargets(ctx)
	if err != nil {
		return err
	}
	// A pod another instance holds the lease of is that instance's (or,
	// once it is dead, a takeover's): joining never disturbs it.
	owners, err := a.Store.LeaseOwners(ctx)
	if err != nil {
		return err
	}
	rt := make([]supervisor.ReconcileTarget, 0, len(targets))
	for _, t := range targets {
		if o, ok := owners[t.ID]; ok && o != a.cfg.InstanceID {
			continue
		}
		rt = append(rt, supervisor.ReconcileTarget{Task: t})
	}
	return a.Supervisor.Reconcile(ctx, rt)
}

// resume starts the pods this instance stopped on its last clean shutdown.
// It runs after reconcile (whatever the previous server left running is
// settled first) and before the API serves, so a client never sees those
// pods STOPPED for a moment and then running. A pod that fails to start is
// recorded as a crash; only a store that cannot be read fails the start-up.
func (a *App) resume(ctx context.Context, pods *service.PodService) error {
	targets, err := pods.ResumeTargets(ctx, a.cfg.InstanceID, a.cfg.FormerInstanceIDs...)
	if err != nil {
		return err
	}
	if len(targets) > 0 {
		// Through the limits: a resume queues where a limit is full.
		n := a.schedPods.Resume(ctx, targets)
		a.log.Info("resume done", slog.Int("candidates", len(targets)), slog.Int("started", n))
	}
	return nil
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

// Close takes the server apart in reverse order: open subscriptions end,
// every pod is stopped (gracefully, then killed after the shutdown timeout),
// the commit listener stops, and the store is closed. It is safe to call more
// than once; later calls return the first result.
func (a *App) Close() error {
	a.closeOnce.Do(func() {
		if a.cancelBase != nil {
			a.cancelBase()
		}
		var errs []error
		// The deadline timer cancels tasks (and stops their pods): it
		// stops before the pods and the store do.
		a.stopDeadlines()
		a.expiry.Stop()
		if a.Conversations != nil {
			a.Conversations.Close()
		}
		// Webhook workers read the store; they stop (releasing their
		// endpoints' leases) before it closes.
		if a.Webhooks != nil {
			a.Webhooks.Close()
		}
		if a.cfg.Handoff && a.Coord != nil {
			a.handoff()
		}
		// No more queued pods start here; the others start what was
		// granted to this instance once it counts as dead.
		a.Sched.Stop()
		if a.Coord != nil {
			// The row stays: its heartbeat ages, and Query.instances
			// shows the server dead.
			a.Coord.Stop()
		}
		if a.Supervisor != nil {
			ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
			if err := a.Supervisor.Shutdown(ctx); err != nil {
				a.log.Warn("pod shutdown", "err", err)
				errs = append(errs, err)
			}
			cancel()
		}
		if a.stopListening != nil {
			a.stopListening()
			a.listening.Wait()
		}
		if a.releaseID != nil {
			a.releaseID()
		}
		if a.Store != nil {
			errs = append(errs, a.Store.Close())
		}
		a.closeErr = errors.Join(errs...)
	})
	return a.closeErr
}

// SetAddress records the address this server listens on in its instance row.
func (a *App) SetAddress(ctx context.Context, addr string) {
	if err := a.Coord.SetAddress(ctx, addr); err != nil {
		a.log.Warn("instance address", "err", err)
	}
}

// handoff hands this instance's running pods to the other live instances
// (on shutdown with Config.Handoff); see coordination.Coordinator.Drain.
func (a *App) handoff() {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if n, err := a.Coord.Drain(ctx); err != nil {
		a.log.Warn("handoff", "err", err, "handed_off", n)
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
