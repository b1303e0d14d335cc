package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/eventstore"
	"github.com/ipa-dev/ipa/internal/httpserver"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/manager"
	"github.com/ipa-dev/ipa/internal/store"
)

// serveOptions are the settings of `ipa serve`.
type serveOptions struct {
	addr             string
	authMode         string
	pluginDir        string
	pluginSHA256File string
	instanceID       string
	dataDir          string
	shutdownTimeout  time.Duration
	enableExec       bool
	policy           ipa.RestartPolicy
	allowedHosts     []string
}

func newServeCommand(opts *options) *cobra.Command {
	so := &serveOptions{policy: ipa.DefaultRestartPolicy()}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server (GraphQL at /graphql, IDE at /)",
		Long: `Runs the server: GraphQL at /graphql (HTTP, WebSocket and SSE), the IDE at /,
/healthz, /readyz and /metrics. The database is created and migrated on first
use. SIGINT or SIGTERM stops it cleanly: pods are stopped (gracefully, then
forcibly) and the store is flushed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), opts, so)
		},
	}
	f := cmd.Flags()
	f.StringVar(&so.addr, "addr", "127.0.0.1:8080", "address to listen on")
	f.StringVar(&so.authMode, "auth", "auto", "auto: tokens required unless listening on loopback with no token yet; required: always")
	f.StringVar(&so.pluginDir, "plugin-dir", "", "directory of external runtime plugins (one executable per runtime, named after it)")
	f.StringVar(&so.pluginSHA256File, "plugin-sha256-file", "", "allow-list of external plugins in sha256sum format; only listed files with matching checksums run")
	f.StringVar(&so.dataDir, "data-dir", "./ipa-data", "directory for pod working directories and runtime state")
	f.StringVar(&so.instanceID, "instance-id", "", "name of this server as the owner of its pods (default: host name and data dir); must be stable across restarts and unique per database")
	f.DurationVar(&so.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long a clean shutdown may take before pods are killed")
	f.StringSliceVar(&so.allowedHosts, "allowed-hosts", nil, "host names served, besides localhost and loopback addresses, while requests need no token (comma-separated)")
	f.BoolVar(&so.enableExec, "exec", true, "offer the exec runtime, which runs commands on this machine")
	f.BoolVar(&so.policy.AutoRestart, "restart-auto", so.policy.AutoRestart, "default restart policy: restart crashed pods automatically")
	f.IntVar(&so.policy.MaxAttempts, "restart-max-attempts", so.policy.MaxAttempts, "default restart policy: restarts allowed inside the window")
	f.IntVar(&so.policy.WindowSeconds, "restart-window-seconds", so.policy.WindowSeconds, "default restart policy: window in seconds")
	f.IntVar(&so.policy.InitialBackoffMs, "restart-initial-backoff-ms", so.policy.InitialBackoffMs, "default restart policy: first back-off")
	f.IntVar(&so.policy.MaxBackoffMs, "restart-max-backoff-ms", so.policy.MaxBackoffMs, "default restart policy: back-off cap")
	return cmd
}

// isLoopback reports whether addr listens on loopback addresses only.
func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("--addr %q: %w", addr, err)
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

func serve(parent context.Context, opts *options, so *serveOptions) error {
	log, err := opts.newLogger(os.Stderr)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	mode, err := auth.ParseMode(so.authMode)
	if err != nil {
		return err
	}
	if err := so.policy.Validate(); err != nil {
		return fmt.Errorf("default restart policy: %w", err)
	}
	loopback, err := isLoopback(so.addr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()

	st, err := opts.openStore(ctx, log)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := auth.CheckListen(ctx, st, loopback); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Commits of other instances on the same PostgreSQL database reach this
	// instance's live feeds as notices; SQLite has no other instances.
	listenCtx, stopListening := context.WithCancel(ctx)
	var listening sync.WaitGroup
	defer func() { stopListening(); listening.Wait() }()
	cat, err := discoverRuntimes(so, log)
	if err != nil {
		return err
	}
	broker := eventstore.NewBroker()
	listening.Add(1)
	go func() {
		defer listening.Done()
		st.ListenCommits(listenCtx, func(n store.CommitNotice) {
			broker.Publish(eventstore.Commit{TaskID: n.TaskID, Version: n.Version, Position: n.Position})
		}, broker.Resync)
	}()
	mgr, err := manager.New(ctx, manager.Config{
		Store:         st,
		Runtimes:      cat.runtimes(),
		DefaultPolicy: so.policy,
		Publisher:     broker,
		Feed:          eventstore.NewFeed(st, broker, log),
		Metrics:       manager.NewMetrics(reg),
		Logger:        log,
	})
	if err != nil {
		return err
	}
	pods, err := startPods(ctx, so, cat, mgr, st, reg, log)
	if err != nil {
		return err
	}
	// Stop every pod on the way out, whatever path leaves serve.
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), so.shutdownTimeout)
		defer cancel()
		if err := pods.Shutdown(stopCtx); err != nil {
			log.Warn("pod shutdown", "err", err)
		}
	}()
	handler := httpserver.New(httpserver.Config{
		Manager:      mgr,
		Auth:         auth.New(st, mode, loopback, auth.WithLogger(log)),
		AllowedHosts: so.allowedHosts,
		Registry:     reg,
		Logger:       log,
		Ready: func(ctx context.Context) error {
			if !pods.Running() {
				return errors.New("pod supervisor not running")
			}
			return mgr.Ready(ctx)
		},
	})

	ln, err := net.Listen("tcp", so.addr)
	if err != nil {
		return err
	}
	// Subscriptions live as long as the base context: cancelling it on
	// shutdown ends them, which http.Server.Shutdown alone would not.
	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("ipa serving", "addr", ln.Addr().String(), "graphql", "http://"+ln.Addr().String()+"/graphql",
		"ide", "http://"+ln.Addr().String()+"/", "database", st.Dialect(), "auth", mode, "version", version)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: closing connections, then stopping pods")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), so.shutdownTimeout)
	defer cancel()
	cancelBase()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("http shutdown", "err", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}
