package app

import (
	"context"
	"fmt"
	"path/filepath"

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
	"github.com/ipa-dev/ipa/internal/lifecycle"
	"github.com/ipa-dev/ipa/internal/runtimehost"
	"github.com/ipa-dev/ipa/internal/service"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/supervisor"
	"github.com/ipa-dev/ipa/internal/webhook"
	"github.com/ipa-dev/ipa/internal/workspace"
)

// parts are what the build steps hand on to the later ones.
type parts struct {
	sealer     *webhook.Sealer
	workspaces *workspace.Dirs
	artifacts  *artifact.Store
	pods       *coordination.ScheduledPods // the pods as the services drive them
	// convStop ends the conversations' background work, handoff hands
	// pods over at shutdown; each has two turns in a.life (see
	// buildCoordination, settlePods and startBackground).
	convStop lifecycle.Service
	handoff  lifecycle.Service
}

// build runs the steps that assemble the server, in order. A long-lived
// part joins a.life as it starts (or, for one that runs from its
// construction, where its stop belongs), so Close stops exactly what was
// started, the last started first: requests' timers before webhook workers,
// those before the handoff, the scheduler and the heartbeat, pods after
// them, and the store last.
func (a *App) build(ctx context.Context) error {
	if a.baseCtx == nil {
		a.baseCtx, a.cancelBase = context.WithCancel(context.WithoutCancel(ctx))
	}
	p := &parts{}
	for _, step := range []func(context.Context, *parts) error{
		a.openStore,
		a.buildEventLog,
		a.buildPods,
		a.buildCoordination,
		a.buildServices,
		a.settlePods,
		a.startBackground,
		a.buildHTTP,
	} {
		if err := step(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// openStore opens (and migrates) the store, holds the instance id, checks
// the listen address against the accounts, and readies the webhook secrets'
// key and the metrics registry.
func (a *App) openStore(ctx context.Context, p *parts) (err error) {
	cfg := a.cfg
	// With an exclusive id, the id is held before the store is migrated:
	// a second server with the same id changes nothing.
	if a.Store, err = store.Open(ctx, cfg.DatabaseURL, store.Options{Logger: a.log, SkipMigrate: cfg.ExclusiveID}); err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	a.life.Add(lifecycle.OnStop(a.Store.Close))
	if cfg.ExclusiveID {
		releaseID, err := a.Store.HoldInstanceID(ctx, cfg.InstanceID)
		if err != nil {
			return err
		}
		a.life.Add(lifecycle.OnStop(func() error { releaseID(); return nil }))
		if _, err := a.Store.Migrate(ctx); err != nil {
			return err
		}
	}
	if err := auth.CheckListen(ctx, a.Store, cfg.Loopback); err != nil {
		return err
	}
	if p.sealer, err = a.prepareSecrets(ctx); err != nil {
		return err
	}
	a.Registry = prometheus.NewRegistry()
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return nil
}

// buildEventLog builds the webhook deliverer (not started yet), the live
// feeds with the listener for other instances' commits, and the event log
// writer that publishes to both.
func (a *App) buildEventLog(_ context.Context, p *parts) (err error) {
	cfg := a.cfg
	// Outbound webhooks hear of every commit, local or from another
	// instance, to wake their workers; they start once the services exist.
	owner := cfg.InstanceID
	if owner == "" {
		owner = "process-" + uuid.NewString()
	}
	whCfg := webhook.Config{
		Store: a.Store, Owner: owner, AllowPrivate: cfg.WebhookAllowPrivate, Registry: a.Registry, Logger: a.log,
		Secrets: p.sealer,
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
	a.Feed = feed.NewFeed(a.Store, a.Broker, a.log)
	if err := a.life.Start(a.baseCtx, &commitListener{store: a.Store, broker: a.Broker, webhooks: a.Webhooks}); err != nil {
		return err
	}
	var pub eventlog.Publisher = notifyWebhooks{next: a.Broker, webhooks: a.Webhooks}
	if cfg.Publish != nil {
		pub = cfg.Publish(pub)
	}
	a.Writer = eventlog.NewWriter(a.Store, pub)
	a.Conversations = conversation.New(a.Store, a.Writer, a.Feed, a.log)
	return nil
}

// buildPods builds the tasks' workspaces and artifacts, the scheduler and
// the supervisor, and starts the supervisor.
func (a *App) buildPods(ctx context.Context, p *parts) (err error) {
	cfg := a.cfg
	dataDir := cfg.DataDir
	if dataDir != "" {
		// Absolute, so plugins and leases do not depend on the working directory.
		if dataDir, err = filepath.Abs(dataDir); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	p.workspaces = workspace.New(dataDir)
	p.artifacts = artifact.New(artifact.Config{DataDir: dataDir, MaxBytes: cfg.ArtifactMaxBytes, MaxTaskBytes: cfg.ArtifactMaxTaskBytes,
		Record: recordArtifact(a.Writer), Read: a.Store})
	sweepWorkspaces(ctx, p.workspaces, p.artifacts, a.Store, a.log)
	// Scheduling: a pod lease is a slot, so the lease store tells the
	// scheduler when one frees.
	a.Sched = coordination.NewScheduler(coordination.SchedConfig{
		Store: a.Store, Recorder: eventlog.NewPodRecorder(a.Writer), ID: cfg.InstanceID, TTL: cfg.LeaseTTL, Logger: a.log,
		OnStart: a.schedMetrics(),
	})
	if a.Supervisor, err = supervisor.New(a.supervisorConfig(dataDir, p)); err != nil {
		return err
	}
	return a.life.Start(ctx, a.Supervisor)
}

// supervisorConfig is the supervisor's configuration, adjusted last by
// Config.Supervisor.
func (a *App) supervisorConfig(dataDir string, p *parts) supervisor.Config {
	cfg := a.cfg
	supCfg := supervisor.Config{
		Recorder:        eventlog.NewPodRecorder(a.Writer),
		History:         eventlog.NewPodHistory(a.Store),
		HostFactory:     runtimehost.Factory(a.Writer, a.Store, a.Conversations, p.artifacts, stagingDir(p.workspaces)),
		Launcher:        cfg.Launcher,
		DataDir:         dataDir,
		InstanceID:      cfg.InstanceID,
		Leases:          slotLeases{coordination.NewLeaseStore(a.Store, cfg.InstanceID), a.Sched},
		DefaultPolicy:   cfg.DefaultPolicy,
		Logger:          a.log,
		Registry:        a.Registry,
		PluginEnv:       cfg.PluginEnv,
		Finished:        completeOnSuccess(a.Store, a.Writer, cfg.Runtimes, a.log),
		ShutdownTimeout: cfg.ShutdownTimeout,
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
	return supCfg
}

// buildCoordination builds this server's coordinator among the instances
// (not started yet) and the path every pod command takes: scheduler, then
// the owner of the pod, then the local supervisor.
func (a *App) buildCoordination(_ context.Context, p *parts) (err error) {
	cfg := a.cfg
	if a.Coord, err = coordination.New(coordination.Config{
		Store: a.Store, Pods: a.Supervisor, ID: cfg.InstanceID, Version: cfg.Version,
		Interval: cfg.HeartbeatInterval, TTL: cfg.LeaseTTL, Logger: a.log,
	}); err != nil {
		return err
	}
	a.Sched.Attach(a.Supervisor)
	p.pods = a.Sched.Wrap(a.Coord.Router(a.Supervisor, cfg.CommandWait))
	a.Conversations.SetPods(p.pods)
	// From here the conversations may stop pods in the background (a
	// budget spent): a start that fails from now on still ends that work
	// before the pods stop. On a full start it ends earlier (startBackground).
	p.convStop = conversationsStop(a.Conversations)
	a.life.Add(p.convStop)
	return nil
}

// buildServices builds the use cases the API calls.
func (a *App) buildServices(ctx context.Context, p *parts) error {
	cfg := a.cfg
	key, err := a.Store.Secret(ctx, cursorSecretName, 32)
	if err != nil {
		return fmt.Errorf("cursor key: %w", err)
	}
	tasks, err := service.NewTaskService(service.TaskConfig{
		Store:         a.Store,
		History:       a.Store,
		Writer:        a.Writer,
		Pods:          p.pods,
		Cursors:       cursor.New(key),
		Runtimes:      cfg.Runtimes,
		DefaultPolicy: cfg.DefaultPolicy,
		Metrics:       service.NewMetrics(a.Registry),
		Logger:        a.log,
		Workspaces:    p.workspaces,
		Artifacts:     p.artifacts,
		Gates:         a.Conversations,
	})
	if err != nil {
		return err
	}
	podService := service.NewPodService(a.Store, a.Store, p.pods, cfg.Runtimes)
	if a.Store.Dialect() == "postgres" {
		// Other instances may run this task's pod: answer it from the store.
		podService.ShareWith(cfg.InstanceID, a.Store, cfg.DefaultPolicy)
	}
	podService.SetWorkspaces(p.workspaces)
	podService.SetBudgets(a.Conversations)
	a.Services = &graph.Resolver{
		TaskService:         tasks,
		PodService:          podService,
		FeedService:         service.NewFeedService(a.Feed),
		TokenService:        service.NewTokenService(a.Store, a.log, nil),
		InstanceService:     service.NewInstanceService(a.Coord),
		ArtifactService:     service.NewArtifactService(a.Store, p.artifacts),
		ConversationService: service.NewConversationService(a.Conversations),
		WebhookService:      service.NewWebhookService(sealingStore{Store: a.Store, sealer: p.sealer}, a.Webhooks, webhook.NewSecret, a.log),
		SchedulingService:   service.NewSchedulingService(a.Store, a.Store),
	}
	return nil
}

// buildHTTP builds the HTTP face of the server.
func (a *App) buildHTTP(context.Context, *parts) error {
	cfg := a.cfg
	a.Auth = auth.New(a.Store, cfg.AuthMode, cfg.Loopback, auth.WithLogger(a.log))
	a.Cohorts = cohort.New()
	a.Handler = httpserver.New(httpserver.Config{
		Cohorts:      a.Cohorts,
		Resolver:     a.Services,
		Auth:         a.Auth,
		Registry:     a.Registry,
		Logger:       a.log,
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
