package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// Recorder appends pod lifecycle events to a task's stream.
// eventlog.PodRecorder implements it over the store, one transaction per
// call, which applies the projection (pod_crashed makes the task INACTIVE
// with pod CRASHED, and so on). ctx is the caller's for events a request
// causes (it carries actor and correlation id) and a supervisor context with
// no actor for the events the supervisor decides on its own (crashes,
// restarts, reconcile): the recorder attributes those to the system.
type Recorder interface {
	RecordPodEvent(ctx context.Context, taskID string, ev ipa.NewEvent) (ipa.Event, error)
}

// History reads back the pod events a task's stream already holds, so a
// supervisor that has just started (after a server restart) knows the crashes
// and automatic restarts the task had inside its policy window and cannot be
// dodged by restarting the server. RecentPodEvents returns the task's
// pod_started, pod_crashed and pod_lost events that occurred at or after
// since, oldest first; a bounded read. Errors are the store's.
type History interface {
	RecentPodEvents(ctx context.Context, taskID string, since time.Time) ([]ipa.Event, error)
}

// HostFactory builds the host service served to one pod, bound to that task;
// runtimehost implements the phase rules and event appends behind it.
type HostFactory func(taskID string, runtime string) podapi.Host

// Launcher resolves a runtime name to the command that runs its plugin.
// Returns an EINVALID error (reason INVALID_ARGUMENT) for an unknown runtime.
type Launcher interface {
	Command(runtime string) (*exec.Cmd, error)
}

// LauncherFunc adapts a function to a Launcher.
type LauncherFunc func(runtime string) (*exec.Cmd, error)

func (f LauncherFunc) Command(runtime string) (*exec.Cmd, error) { return f(runtime) }

// Config configures a Supervisor. Zero durations and counts take the defaults
// below; New validates the result once.
type Config struct {
	Recorder    Recorder    // required
	HostFactory HostFactory // required
	Launcher    Launcher    // required
	Leases      LeaseStore  // required: persists pod ownership for Reconcile
	DataDir     string      // pods work in DataDir/tasks/<id>; "": the runtime picks a directory
	// History, when set, seeds a task's restart accounting from its stream
	// the first time this supervisor handles the task; nil: in memory only.
	History History
	// InstanceID names this server in the pod_stopped events of its
	// shutdown, so it can resume those pods when it returns (Resume).
	InstanceID string
	// OrphanGrace, when set, is handed to every plugin launched
	// (IPA_PLUGIN_ORPHAN_GRACE): a plugin that hears nothing from its host
	// for that long stops its work and exits. Several instances set it below
	// the lease TTL, so a dead owner's work stops before anyone takes it
	// over; the state poll then runs at least every OrphanGrace/16, so a
	// host that was paused for less than the grace minus that is heard
	// from again (its poll fires at once on resume) before its plugins
	// give up.
	OrphanGrace time.Duration
	// PluginEnv names server environment variables every plugin inherits
	// besides the minimal set (see PluginEnv); plugins get nothing else of
	// the server's environment.
	PluginEnv []string
	// Finished, when set, is called after a pod's work ended well (the
	// plugin exited 0 on its own) and its pod_stopped is recorded, with the
	// pod's operation lock held: it must not call back into the supervisor.
	Finished func(ctx context.Context, taskID string)
	// WarmPods is how many idle, handshaken plugin processes to keep per
	// runtime for starts to take (warmpool.go); a runtime not named has
	// none. At most MaxWarmPods each.
	WarmPods map[string]int

	StopTimeout      time.Duration // runtime Stop + exit before SIGKILL; default 10s
	ShutdownTimeout  time.Duration // Stop's bound on Shutdown's graceful part; default 20s
	StartTimeout     time.Duration // handshake + Start; default 10s
	StateInterval    time.Duration // live state poll; default 1s
	HealthInterval   time.Duration // default 5s
	HealthTimeout    time.Duration // per State/Health call; default 2s
	HealthFailures   int           // failed health checks in a row before SIGKILL; default 3
	ReattachTimeout  time.Duration // per lease in Reconcile; default 5s
	RecordTimeout    time.Duration // for events the supervisor records on its own; default 10s
	KillWait         time.Duration // wait for exit after SIGKILL; default 5s
	CrashHistory     int           // crashes kept in memory per pod; default 20
	CrashHistoryKeep time.Duration // and for no longer than this; default 1h

	// Pod facts the store cannot take because it is unreachable wait in an
	// outbox, in order per task, and are retried; so does a restart that
	// cannot be recorded, without spending the policy's attempts.
	OutboxLimit   int           // pending pod facts kept, all tasks together; default 10000
	StoreRetryMin time.Duration // first wait for the store; default 250ms
	StoreRetryMax time.Duration // the wait doubles up to this; default 5s

	// DefaultPolicy applies to a task whose RestartPolicy is the zero value
	// (WindowSeconds 0); default ipa.DefaultRestartPolicy().
	DefaultPolicy ipa.RestartPolicy

	Now   func() time.Time                     // default time.Now
	After func(time.Duration) <-chan time.Time // back-off timer; default time.After

	Logger   *slog.Logger          // default slog.Default()
	Registry prometheus.Registerer // nil: metrics are kept but not registered
}

// Defaults named, as Nomad names its driver manager's.
const (
	DefaultStopTimeout      = 10 * time.Second
	DefaultShutdownTimeout  = 20 * time.Second
	DefaultStartTimeout     = 10 * time.Second
	DefaultStateInterval    = time.Second
	DefaultHealthInterval   = 5 * time.Second
	DefaultHealthTimeout    = 2 * time.Second
	DefaultHealthFailures   = 3
	DefaultReattachTimeout  = 5 * time.Second
	DefaultRecordTimeout    = 10 * time.Second
	DefaultKillWait         = 5 * time.Second
	DefaultCrashHistory     = 20
	DefaultCrashHistoryKeep = time.Hour
	DefaultOutboxLimit      = 10000
	DefaultStoreRetryMin    = 250 * time.Millisecond
	DefaultStoreRetryMax    = 5 * time.Second
)

func (c *Config) withDefaults() error {
	dur := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	dur(&c.StopTimeout, DefaultStopTimeout)
	dur(&c.ShutdownTimeout, DefaultShutdownTimeout)
	dur(&c.StartTimeout, DefaultStartTimeout)
	dur(&c.StateInterval, DefaultStateInterval)
	dur(&c.HealthInterval, DefaultHealthInterval)
	dur(&c.HealthTimeout, DefaultHealthTimeout)
	dur(&c.ReattachTimeout, DefaultReattachTimeout)
	dur(&c.RecordTimeout, DefaultRecordTimeout)
	dur(&c.KillWait, DefaultKillWait)
	dur(&c.CrashHistoryKeep, DefaultCrashHistoryKeep)
	dur(&c.StoreRetryMin, DefaultStoreRetryMin)
	dur(&c.StoreRetryMax, DefaultStoreRetryMax)
	if c.OrphanGrace > 0 && c.StateInterval > c.OrphanGrace/16 {
		c.StateInterval = c.OrphanGrace / 16
	}
	if c.OutboxLimit == 0 {
		c.OutboxLimit = DefaultOutboxLimit
	}
	if c.HealthFailures == 0 {
		c.HealthFailures = DefaultHealthFailures
	}
	if c.CrashHistory == 0 {
		c.CrashHistory = DefaultCrashHistory
	}
	if c.DefaultPolicy == (ipa.RestartPolicy{}) {
		c.DefaultPolicy = ipa.DefaultRestartPolicy()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.After == nil {
		c.After = time.After
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	var errs []error
	if c.Recorder == nil {
		errs = append(errs, errors.New("Recorder is required"))
	}
	if c.HostFactory == nil {
		errs = append(errs, errors.New("HostFactory is required"))
	}
	if c.Launcher == nil {
		errs = append(errs, errors.New("Launcher is required"))
	}
	if c.Leases == nil {
		errs = append(errs, errors.New("Leases is required"))
	}
	for name, d := range map[string]time.Duration{
		"StopTimeout": c.StopTimeout, "ShutdownTimeout": c.ShutdownTimeout, "StartTimeout": c.StartTimeout, "StateInterval": c.StateInterval,
		"HealthInterval": c.HealthInterval, "HealthTimeout": c.HealthTimeout, "ReattachTimeout": c.ReattachTimeout,
		"RecordTimeout": c.RecordTimeout, "KillWait": c.KillWait, "CrashHistoryKeep": c.CrashHistoryKeep,
		"StoreRetryMin": c.StoreRetryMin, "StoreRetryMax": c.StoreRetryMax, "OrphanGrace": c.OrphanGrace,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", name, d))
		}
	}
	for rt, n := range c.WarmPods {
		if n < 0 || n > MaxWarmPods {
			errs = append(errs, fmt.Errorf("WarmPods[%q] must be from 0 to %d, got %d", rt, MaxWarmPods, n))
		}
	}
	if c.HealthFailures < 0 || c.CrashHistory < 0 || c.OutboxLimit < 0 {
		errs = append(errs, errors.New("HealthFailures, CrashHistory and OutboxLimit must be positive"))
	}
	if err := c.DefaultPolicy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("DefaultPolicy: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("supervisor config: %w", err)
	}
	return nil
}
