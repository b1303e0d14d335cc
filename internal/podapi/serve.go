package podapi

import (
	"context"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/ipa-dev/ipa/internal/ipa"
	pb "github.com/ipa-dev/ipa/internal/podapi/proto"
)

// Plugin environment. The host may set these on the plugin's command.
const (
	// EnvOrphanGrace is how long a plugin with no host connected keeps
	// running before it stops its work and exits (a Go duration; default
	// DefaultOrphanGrace).
	EnvOrphanGrace = "IPA_PLUGIN_ORPHAN_GRACE"
	// EnvLogFile, when set, is a file the plugin appends its log to as well
	// as stderr, so its log survives the host (whose stderr pipe dies with it).
	EnvLogFile = "IPA_PLUGIN_LOG_FILE"
)

// DefaultOrphanGrace is the orphan grace period when EnvOrphanGrace is unset.
const DefaultOrphanGrace = 60 * time.Second

// SilenceGrace is the orphan grace for plugins whose host holds its pods
// under a lease of the given TTL: three quarters of it. A plugin should give
// up its work only when its host may have lost the lease, which another
// instance can take only after the TTL; so a host paused (or starved) for
// well over half the TTL keeps its pods, while a dead owner's plugins notice
// the silence within a 32nd of the grace and stop within a 16th more (Serve):
// their work is over at about 0.82 of the TTL after the host's last call, a
// heartbeat interval (a fifth of the TTL by default) before a takeover can
// happen. The host must call at least every grace/16 (its state poll) so that
// a pause shorter than the grace minus that does not end the work.
func SilenceGrace(leaseTTL time.Duration) time.Duration { return leaseTTL * 3 / 4 }

// ExitHostSilent is the exit status of a plugin that stopped its work
// because its host went silent (or never connected) for the orphan grace.
// The exit report it writes first (reason ipa.LostHostSilent) is what tells
// the host; the status is non-zero only so that a host that could not read
// the report never takes the stop for work that finished (status 0).
const ExitHostSilent = 75 // EX_TEMPFAIL: the work did not finish and may run again

// orphanStopTimeout bounds the Stop a plugin gives its work before exiting as
// an orphan, or after its host shut it down.
const orphanStopTimeout = 10 * time.Second

// ExitStatus is how a plugin process should end: with Code, or killed by
// Signal when it is non-zero (re-raised on the plugin itself, so the
// supervisor sees the same signal the work died of).
type ExitStatus struct {
	Code   int
	Signal syscall.Signal
	// Reason and Message, when Reason is set, are written as the exit
	// report (see ExitReportPrefix) so the host can tell why the work
	// ended (e.g. "timeout", "limit: cpu").
	Reason  string
	Message string
}

// Finisher is implemented by a Runtime whose work ends on its own (exec).
// When the channel yields, Serve exits the plugin process with that status.
// The runtime must have reported what it has to report through the Host
// before it sends.
type Finisher interface {
	Finished() <-chan ExitStatus
}

var (
	loggerOnce sync.Once
	logger     hclog.Logger
)

// Logger is the plugin's logger. It writes to the stderr the plugin was
// started with (read by the host's go-plugin client) and, when EnvLogFile is
// set, to that file too. Once the host is gone, writes to stderr fail with
// EPIPE (harmless: Serve makes SIGPIPE non-fatal) and the file keeps the log.
// Never write to os.Stdout/os.Stderr in a plugin after Serve: go-plugin
// redirects them into a pipe that blocks once nobody reads it.
func Logger() hclog.Logger {
	loggerOnce.Do(func() {
		var out io.Writer = bestEffort{os.Stderr}
		if path := os.Getenv(EnvLogFile); path != "" {
			if f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
				out = io.MultiWriter(bestEffort{f}, out)
			}
		}
		logger = hclog.New(&hclog.LoggerOptions{
			Name:       "plugin",
			Level:      hclog.Info,
			Output:     out,
			JSONFormat: true,
		})
	})
	return logger
}

// bestEffort swallows write errors so one dead sink does not silence another.
type bestEffort struct{ w io.Writer }

func (b bestEffort) Write(p []byte) (int, error) {
	_, _ = b.w.Write(p)
	return len(p), nil
}

// Serve runs impl as a plugin process and never returns: a plugin's main is
// one call to it. It checks the handshake (a binary started by hand says so
// and exits 1), makes SIGPIPE non-fatal, serves impl over gRPC, exits when
// the host shuts the plugin down (after stopping the work), when a Finisher
// impl finishes (with its status), or when no host has been connected for the
// orphan grace period (after stopping the work).
func Serve(impl Runtime) {
	// A write to a broken stdout/stderr pipe kills a Go program with SIGPIPE
	// unless SIGPIPE is notified (ignoring it with SIG_IGN would be inherited
	// by the commands a runtime runs). The channel is never read: the signal
	// is dropped and the write fails with EPIPE.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)

	log := Logger()
	grace := DefaultOrphanGrace
	if v := os.Getenv(EnvOrphanGrace); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			grace = d
		} else {
			log.Warn("ignoring bad orphan grace", "value", v)
		}
	}

	shutdownTracing := pluginTracing()
	var exitOnce sync.Once
	exit := func(st ExitStatus, why string) {
		exitOnce.Do(func() {
			log.Info("plugin exiting", "reason", why, "code", st.Code, "signal", st.Signal, "crash_reason", st.Reason)
			if st.Reason != "" {
				// fd 2 is the pipe the host reads (go-plugin swapped os.Stderr).
				_, _ = syscall.Write(2, FormatExitReport(ExitReport{Reason: st.Reason, Message: st.Message}))
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = shutdownTracing(ctx) // send what the plugin traced
			cancel()
			exitProcess(st)
		})
	}
	stopTimeout := orphanStop(grace)
	stopWork := func(reason string) {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		_, _ = impl.Stop(ctx, StopRequest{Deadline: time.Now().Add(stopTimeout * 9 / 10), Reason: reason})
	}

	watch := newConnWatch(grace, func() {
		log.Warn("no host connected within the orphan grace period; stopping", "grace", grace)
		stopWork("orphaned: no host attached within " + grace.String())
		// The host, if it comes back still owning the pod, reads why the
		// work ended: it was lost, not finished (pod_lost host_silent).
		exit(ExitStatus{Code: ExitHostSilent, Reason: ipa.LostHostSilent,
			Message: "the plugin stopped its work: its server was silent for " + grace.String()}, "orphaned")
	})
	defer watch.close()

	if f, ok := impl.(Finisher); ok {
		go func() {
			st := <-f.Finished()
			// Let in-flight Runtime calls (a Stop waiting for this end)
			// send their answers before the process goes.
			watch.waitIdle(2 * time.Second)
			exit(st, "work finished")
		}()
	}

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: servedPluginMap(impl),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.StatsHandler(watch), pluginServerOption())...)
		},
		Logger: log,
	})
	// plugin.Serve returns when the host shut the plugin down (or could not
	// start it, e.g. the handshake failed).
	stopWork("host shut the plugin down")
	exit(ExitStatus{}, "host shut the plugin down")
}

// exitProcess ends the process with st: os.Exit(st.Code), or the default
// action of st.Signal.
func exitProcess(st ExitStatus) {
	if st.Signal != 0 {
		// The signal is the work's (SIGXCPU, SIGSEGV…): no core of the plugin.
		_ = syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{})
		signal.Reset(st.Signal)
		defaultSignalAction(st.Signal)
		_ = syscall.Kill(os.Getpid(), st.Signal)
		time.Sleep(time.Second) // the signal is on its way; fall through if ignored
		os.Exit(128 + int(st.Signal))
	}
	os.Exit(st.Code)
}

// orphanStop is the Stop an orphan gives its work. The work must be over
// well within the lease TTL the grace is derived from (SilenceGrace): the
// silence is noticed within a 32nd of the grace (silenceTick) and the Stop
// gets a 16th at most, so the work has stopped before about 0.82 of the TTL
// has passed.
func orphanStop(grace time.Duration) time.Duration {
	return min(orphanStopTimeout, max(grace/16, 100*time.Millisecond))
}

// silenceTick is how often the watch looks for a silent host.
func silenceTick(grace time.Duration) time.Duration { return max(grace/32, time.Millisecond) }

// connWatch counts host connections to the plugin's gRPC server and fires
// onOrphan once none has been open for grace (counting from start too), or
// once a connected host that was calling (it polls State every
// StateInterval, well under grace) has made no Runtime call for grace: a
// host that is stopped (SIGSTOP) or cut off keeps its sockets open, and its
// lease may be taken over by another instance after the TTL, so its plugin
// must stop its work all the same.
type connWatch struct {
	grace    time.Duration
	onOrphan func()
	once     sync.Once
	done     chan struct{}

	mu       sync.Mutex
	conns    int
	calls    int // Runtime calls in flight
	timer    *time.Timer
	sawCall  bool      // a Runtime call arrived since the last connection began
	lastCall time.Time // when the last Runtime call began
	closed   bool
}

type runtimeCallKey struct{}

// waitIdle waits until no Runtime call is in flight, or max has passed.
func (w *connWatch) waitIdle(max time.Duration) {
	end := time.Now().Add(max)
	for time.Now().Before(end) {
		w.mu.Lock()
		n := w.calls
		w.mu.Unlock()
		if n <= 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newConnWatch(grace time.Duration, onOrphan func()) *connWatch {
	w := &connWatch{grace: grace, onOrphan: onOrphan, done: make(chan struct{})}
	w.timer = time.AfterFunc(grace, w.fire)
	go w.watchSilence()
	return w
}

func (w *connWatch) fire() {
	w.mu.Lock()
	orphan := w.conns == 0
	w.mu.Unlock()
	if orphan {
		w.once.Do(w.onOrphan)
	}
}

// watchSilence fires onOrphan when a connected host has gone silent.
func (w *connWatch) watchSilence() {
	t := time.NewTicker(silenceTick(w.grace))
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
		}
		w.mu.Lock()
		silent := w.conns > 0 && w.sawCall && time.Since(w.lastCall) > w.grace
		w.mu.Unlock()
		if silent {
			w.once.Do(w.onOrphan)
			return
		}
	}
}

func (w *connWatch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer.Stop()
	if !w.closed {
		w.closed = true
		close(w.done)
	}
}

func (w *connWatch) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (w *connWatch) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if strings.HasPrefix(info.FullMethodName, "/"+pb.Runtime_ServiceDesc.ServiceName+"/") {
		return context.WithValue(ctx, runtimeCallKey{}, true)
	}
	return ctx
}

func (w *connWatch) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if ctx.Value(runtimeCallKey{}) == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch s.(type) {
	case *stats.Begin:
		w.calls++
		w.sawCall, w.lastCall = true, time.Now()
	case *stats.End:
		w.calls--
	}
}

func (w *connWatch) HandleConn(_ context.Context, s stats.ConnStats) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch s.(type) {
	case *stats.ConnBegin:
		w.conns++
		w.timer.Stop()
		w.sawCall = false // a new host: silent only after it has called
	case *stats.ConnEnd:
		w.conns--
		if w.conns == 0 {
			w.timer.Reset(w.grace)
		}
	}
}
