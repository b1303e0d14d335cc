package ipacli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ipa-dev/ipa/internal/app"
	"github.com/ipa-dev/ipa/internal/artifact"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/buildinfo"
	"github.com/ipa-dev/ipa/internal/catalog"
	"github.com/ipa-dev/ipa/internal/coordination"
	"github.com/ipa-dev/ipa/internal/hardening"
	"github.com/ipa-dev/ipa/internal/httpserver"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/sandbox"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/supervisor"
	"github.com/ipa-dev/ipa/internal/tracing"
	"github.com/ipa-dev/ipa/internal/webhook"
)

// serveOptions are the settings of `ipa serve`.
type serveOptions struct {
	addr             string
	socket           string
	authMode         string
	pluginDir        string
	pluginSHA256File string
	pluginEnv        []string
	warmPods         []string
	secretKeyFile    string
	instanceID       string
	dataDir          string
	shutdownTimeout  time.Duration
	enableExec       bool
	execRole         string
	sandbox          string
	bwrap            string
	workspaceMax     int64
	artifactMax      int64
	artifactTaskMax  int64
	allowedHosts     []string
	resumePods       bool
	metricsAddr      string
	rateLimit        float64
	rateBurst        int
	policy           ipa.RestartPolicy
	heartbeat        time.Duration
	leaseTTL         time.Duration
	handoff          bool
	webhooks         webhookOptions
}

// webhookOptions are the outbound webhook settings of `ipa serve`.
type webhookOptions struct {
	allowPrivate bool
	timeout      time.Duration
	minBackoff   time.Duration
	maxBackoff   time.Duration
}

func newServeCommand(opts *options) *cobra.Command {
	so := &serveOptions{policy: ipa.DefaultRestartPolicy()}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server (GraphQL at /graphql, IDE at /)",
		Long: `Runs the server: GraphQL at /graphql (HTTP, WebSocket and SSE), the IDE at /,
/healthz, /readyz and /metrics. The database is created and migrated on first
use. SIGINT or SIGTERM stops it cleanly: pods are stopped (gracefully, then
forcibly) and the store is flushed; the next start of the same instance
resumes those pods (--resume-pods=false leaves them stopped).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), opts, so)
		},
	}
	f := cmd.Flags()
	f.StringVar(&so.addr, "addr", "127.0.0.1:8080", "address to listen on")
	f.StringVar(&so.socket, "socket", "", "also serve everything on this Unix socket (mode 0600; clients: curl --unix-socket PATH, ipa task --server unix://PATH)")
	f.StringVar(&so.authMode, "auth", "auto", "auto: tokens required unless listening on loopback with no token yet; required: always")
	f.StringVar(&so.pluginDir, "plugin-dir", "", "directory of external runtime plugins (one executable per runtime, named after it)")
	f.StringVar(&so.pluginSHA256File, "plugin-sha256-file", "", "allow-list of external plugins in sha256sum format; only listed files with matching checksums run")
	f.StringSliceVar(&so.warmPods, "warm-pods", nil, "idle, handshaken plugin processes kept per runtime for startPod to take (a start then costs one Start call, not a process launch): N for every runtime, NAME=N for one, comma-separated or repeated, later wins (\"2,exec=0\"); each is replaced in the background once taken; at most 64 per runtime")
	f.StringSliceVar(&so.pluginEnv, "plugin-env", nil, "names of server environment variables plugins inherit besides PATH, HOME, locale, TZ and OTEL_* (comma-separated); plugins get no other server variable")
	f.StringVar(&so.secretKeyFile, "secret-key-file", "", "key sealing webhook secrets in the database, created when absent (default: ipa-secret.key beside a SQLite store, in --data-dir for PostgreSQL); every server on one database needs the same")
	f.StringVar(&so.dataDir, "data-dir", "./ipa-data", "directory for pod working directories and runtime state")
	f.StringVar(&so.instanceID, "instance-id", "", "name of this server as the owner of its pods (default: host name and a digest of the data dir); must be stable across restarts and unique per database")
	f.DurationVar(&so.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long a clean shutdown may take before pods are killed")
	f.StringVar(&so.metricsAddr, "metrics-addr", "", "also serve /metrics, without authentication, on this address (a private interface for the scraper)")
	f.Float64Var(&so.rateLimit, "rate-limit", 0, "requests per second each token (or remote address without one) may send to /graphql; 0: no limit")
	f.IntVar(&so.rateBurst, "rate-burst", 0, "requests a caller may send at once above --rate-limit (default: the rate, at least 1)")
	f.StringSliceVar(&so.allowedHosts, "allowed-hosts", nil, "host names served, besides localhost and loopback addresses, while requests need no token (comma-separated)")
	f.StringVar(&so.execRole, "exec-role", "admin", "role needed to create or start an exec task (admin or operator); whoever may run exec runs code as the server's OS user")
	f.StringVar(&so.sandbox, "sandbox", "auto", "sandbox exec commands with bubblewrap (bwrap): off; auto (wherever bwrap works); required (exec pods refused without a working bwrap; implied by --exec-role operator)")
	f.StringVar(&so.bwrap, "bwrap", "", "the bubblewrap program sandboxed exec commands run under (default: bwrap from PATH)")
	f.Int64Var(&so.workspaceMax, "workspace-max-bytes", 0, "stop an exec pod whose task's workspace holds more than this many bytes (crash reason \"limit: workspace\"); 0: no limit")
	f.Int64Var(&so.artifactMax, "artifact-max-bytes", artifact.DefaultMaxBytes, "largest artifact kept; a larger one is refused (artifact_refused)")
	f.Int64Var(&so.artifactTaskMax, "artifacts-max-task-bytes", artifact.DefaultMaxTaskBytes, "most bytes of artifacts kept per task; an artifact that would pass it is refused")
	f.BoolVar(&so.enableExec, "exec", true, "offer the exec runtime, which runs commands on this machine")
	f.DurationVar(&so.heartbeat, "heartbeat-interval", coordination.DefaultHeartbeatInterval, "how often this instance refreshes its heartbeat in the database")
	f.DurationVar(&so.leaseTTL, "lease-ttl", coordination.DefaultLeaseTTL, "an instance whose heartbeat is older than this is dead and its pods are taken over (at least twice --heartbeat-interval); a plugin whose server is silent (paused, starved, gone) stops its work and exits after three quarters of it on PostgreSQL, after 60s on SQLite (or IPA_PLUGIN_ORPHAN_GRACE from the server's environment): a server paused or restarted within that finds its pods running, one that comes back later still owning a pod records pod_lost host_silent and applies the restart policy")
	f.BoolVar(&so.handoff, "handoff", false, "on SIGTERM, hand pods to other live instances instead of stopping them")
	f.BoolVar(&so.resumePods, "resume-pods", true, "on start, start again the pods this instance's last clean shutdown stopped")
	f.BoolVar(&so.policy.AutoRestart, "restart-auto", so.policy.AutoRestart, "default restart policy: restart crashed pods automatically")
	f.IntVar(&so.policy.MaxAttempts, "restart-max-attempts", so.policy.MaxAttempts, "default restart policy: restarts allowed inside the window")
	f.IntVar(&so.policy.WindowSeconds, "restart-window-seconds", so.policy.WindowSeconds, "default restart policy: window in seconds")
	f.IntVar(&so.policy.InitialBackoffMs, "restart-initial-backoff-ms", so.policy.InitialBackoffMs, "default restart policy: first back-off")
	f.IntVar(&so.policy.MaxBackoffMs, "restart-max-backoff-ms", so.policy.MaxBackoffMs, "default restart policy: back-off cap")
	f.BoolVar(&so.webhooks.allowPrivate, "webhook-allow-private", false, "let webhook endpoints target loopback, private and link-local addresses (refused by default: SSRF)")
	f.DurationVar(&so.webhooks.timeout, "webhook-timeout", webhook.DefaultTimeout, "time limit of one webhook request, from dialling to the end of the answer")
	f.DurationVar(&so.webhooks.minBackoff, "webhook-min-backoff", webhook.DefaultMinBackoff, "wait after a failed webhook delivery; it doubles with each further failure")
	f.DurationVar(&so.webhooks.maxBackoff, "webhook-max-backoff", webhook.DefaultMaxBackoff, "cap of the wait between webhook delivery attempts")
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
	// Other processes of this user (an exec pod's command) cannot read the
	// server's environment or memory; root still can (see docs/guides/security.md).
	if err := hardening.NotDumpable(); err != nil {
		return fmt.Errorf("make the server non-dumpable: %w", err)
	}
	mode, err := auth.ParseMode(so.authMode)
	if err != nil {
		return err
	}
	if err := checkDatabaseURL(opts.database, opts.createDirs); err != nil {
		return err
	}
	if err := so.policy.Validate(); err != nil {
		return fmt.Errorf("default restart policy: %w", err)
	}
	loopback, err := isLoopback(so.addr)
	if err != nil {
		return err
	}
	dataDir, err := filepath.Abs(so.dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if err := supervisor.CheckPluginEnvNames(so.pluginEnv); err != nil {
		return err
	}
	execRole := ipa.Role(strings.ToUpper(so.execRole))
	if execRole != ipa.RoleAdmin && execRole != ipa.RoleOperator {
		return fmt.Errorf("--exec-role must be admin or operator, not %q", so.execRole)
	}
	if so.artifactMax < 1 || so.artifactTaskMax < 1 {
		return errors.New("--artifact-max-bytes and --artifacts-max-task-bytes must be at least 1")
	}
	if so.workspaceMax < 0 {
		return errors.New("--workspace-max-bytes must be 0 (no limit) or more")
	}
	sandboxMode, err := sandbox.ParseMode(so.sandbox)
	if err != nil {
		return err
	}
	if execRole == ipa.RoleOperator && sandboxMode == sandbox.Off {
		return errors.New("--exec-role operator needs the sandbox: --sandbox off is refused with it")
	}
	keyFile := so.secretKeyFile
	if keyFile == "" {
		keyFile = defaultSecretKeyFile(opts.database, dataDir)
	}
	// Bind first, then make sure no other server uses this data dir or
	// store: a second `ipa serve` fails here, before it has migrated,
	// reconciled or started anything — its shutdown would otherwise stop
	// the first one's pods.
	ln, err := net.Listen("tcp", so.addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	defer ln.Close()
	release, err := lockServer(dataDir, opts.database)
	if err != nil {
		return err
	}
	defer release()
	if so.socket != "" {
		// After the lock: a second server must not replace the first
		// one's socket.
		uln, err := httpserver.ListenUnix(so.socket)
		if err != nil {
			return fmt.Errorf("--socket: %w", err)
		}
		defer uln.Close()
		ln = httpserver.MergeListeners(ln, uln)
	}
	cat, err := catalog.Discover(catalog.Options{
		PluginDir: so.pluginDir, SHA256File: so.pluginSHA256File, EnableExec: so.enableExec, ExecRole: execRole, DataDir: dataDir,
		Sandbox: sandboxMode, Bwrap: so.bwrap, WorkspaceMaxBytes: so.workspaceMax, SandboxHide: serverFiles(opts, dataDir, keyFile),
	}, log)
	if err != nil {
		return err
	}
	var runtimeNames []string
	for _, rt := range cat.Runtimes() {
		runtimeNames = append(runtimeNames, rt.Name)
	}
	warmPods, err := supervisor.ParseWarmPods(so.warmPods, runtimeNames)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Traces go out only when the OTEL_* environment asks for them.
	shutdownTracing, err := tracing.Setup(ctx, "ipa")
	if err != nil {
		return fmt.Errorf("tracing (OTEL_* environment): %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			log.Warn("traces not all sent", slog.Any("error", err))
		}
	}()
	if tracing.Enabled() {
		log.Info("tracing on", "exporter", "otlp")
	}

	id, formerIDs := instanceID(so, dataDir)
	secretKey := func() ([]byte, error) { return loadSecretKey(keyFile, so.secretKeyFile == "", log) }
	err = app.Run(ctx, app.Config{
		DatabaseURL:          opts.database,
		Runtimes:             cat.Runtimes(),
		Launcher:             supervisor.LauncherFunc(cat.Command),
		DataDir:              dataDir,
		InstanceID:           id,
		FormerInstanceIDs:    formerIDs,
		ResumePods:           so.resumePods,
		DefaultPolicy:        so.policy,
		AuthMode:             mode,
		Loopback:             loopback,
		ShutdownTimeout:      so.shutdownTimeout,
		RateLimit:            so.rateLimit,
		RateBurst:            so.rateBurst,
		MetricsAddr:          so.metricsAddr,
		AllowedHosts:         so.allowedHosts,
		Logger:               log,
		Version:              buildinfo.Get().Short(),
		HeartbeatInterval:    so.heartbeat,
		LeaseTTL:             so.leaseTTL,
		Handoff:              so.handoff,
		PluginEnv:            so.pluginEnv,
		ArtifactMaxBytes:     so.artifactMax,
		ArtifactMaxTaskBytes: so.artifactTaskMax,
		SecretKey:            secretKey,
		ExclusiveID:          true,
		WebhookAllowPrivate:  so.webhooks.allowPrivate,
		Supervisor: func(c *supervisor.Config) {
			c.WarmPods = warmPods
		},
		Webhook: func(c *webhook.Config) {
			c.Timeout, c.MinBackoff, c.MaxBackoff = so.webhooks.timeout, so.webhooks.minBackoff, so.webhooks.maxBackoff
		},
	}, ln, func(srv *app.App) {
		log.Info("ipa serving", "addr", ln.Addr().String(), "graphql", "http://"+ln.Addr().String()+"/graphql",
			"ide", "http://"+ln.Addr().String()+"/", "database", srv.Store.Dialect(), "auth", mode, "version", buildinfo.Get().Short())
		if so.socket != "" {
			log.Info("also serving on a Unix socket", "socket", so.socket)
		}
	})
	if errors.Is(err, webhook.ErrWrongKey) {
		return fmt.Errorf("--secret-key-file %s: %w", keyFile, err)
	}
	if err != nil {
		return describeOpenError(opts.database, err)
	}
	log.Info("stopped")
	return nil
}

// lockServer takes the locks that keep a second `ipa serve` off this
// server's data dir (same default instance id, same pod working
// directories) and, on SQLite, off its store, even from another data dir.
func lockServer(dataDir, database string) (release func(), err error) {
	var releases []func()
	release = func() {
		for _, r := range releases {
			r()
		}
	}
	r, err := store.LockServer(filepath.Join(dataDir, "server.lock"), "data dir "+dataDir)
	if err != nil {
		return nil, fmt.Errorf("%w: stop it first, or give this server its own --data-dir", err)
	}
	releases = append(releases, r)
	path, err := store.ServerLockPath(database)
	if err != nil || path == "" {
		return release, err
	}
	if r, err = store.LockServer(path, "database "+strings.TrimSuffix(path, ".server.lock")); err != nil {
		release()
		return nil, fmt.Errorf("%w: stop it first, or give this server its own --database", err)
	}
	releases = append(releases, r)
	return release, nil
}

// serverFiles are the server's own files a sandboxed command must not see:
// the data directory (every task's workspace, bound back in for its own
// task only), a SQLite store with its journal files, the secret key file
// and the database URL file.
func serverFiles(opts *options, dataDir, keyFile string) []string {
	files := []string{dataDir}
	if path, ok := strings.CutPrefix(opts.database, "sqlite://"); ok {
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		if abs, err := filepath.Abs(path); err == nil {
			files = append(files, abs, abs+"-wal", abs+"-shm", abs+"-journal")
		}
	}
	for _, f := range []string{keyFile, opts.databaseURLFile} {
		if f == "" {
			continue
		}
		if abs, err := filepath.Abs(f); err == nil {
			files = append(files, abs)
		}
	}
	return files
}
