package supervisor

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the supervisor's Prometheus collectors. They always exist (so
// the code never checks for nil) and are registered only when Config.Registry
// is set.
type metrics struct {
	running         prometheus.Gauge
	starts          *prometheus.CounterVec // runtime, trigger (manual|auto_start|restart|resume|reattach)
	startFailures   *prometheus.CounterVec // runtime
	startSeconds    *prometheus.HistogramVec
	crashes         *prometheus.CounterVec // runtime, signal, reason
	restarts        *prometheus.CounterVec // runtime
	restartSuccess  *prometheus.CounterVec // runtime
	restartLimit    *prometheus.CounterVec // runtime
	lost            *prometheus.CounterVec // runtime
	unresponsiveKil *prometheus.CounterVec // runtime
	pending         prometheus.Gauge       // pod facts waiting in the outbox
	dropped         *prometheus.CounterVec // reason (outbox_full, rejected, shutdown)
	storeWaits      *prometheus.CounterVec // runtime
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ipa_pods_running", Help: "Pods whose plugin process is running now.",
		}),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_pod_starts_total", Help: "Pod processes started or adopted, by runtime and trigger (manual, auto_start, restart, resume, reattach).",
		}, []string{"runtime", "trigger"}),
		startFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_pod_start_failures_total", Help: "Pod starts that failed before the runtime accepted Start.",
		}, []string{"runtime"}),
		startSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ipa_pod_start_seconds", Help: "Time from launching a plugin process to its pod RUNNING.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"runtime"}),
		crashes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_pod_crashes_total", Help: "Pod processes that ended without being asked to, by runtime, signal (empty when it exited) and reason.",
		}, []string{"runtime", "signal", "reason"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_pod_restarts_total", Help: "Automatic restarts attempted by the restart policy.",
		}, []string{"runtime"}),
		restartSuccess: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_pod_restart_success_total", Help: "Automatically restarted pods that stayed up longer than their policy window.",
		}, []string{"runtime"}),
		restartLimit: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_pod_restart_limit_reached_total", Help: "Pods put in FAILED because they crashed too often.",
		}, []string{"runtime"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_pod_lost_total", Help: "Pods found gone (or not ours) when the server came back.",
		}, []string{"runtime"}),
		unresponsiveKil: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_pod_unresponsive_kills_total", Help: "Plugins killed for failing consecutive health checks.",
		}, []string{"runtime"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ipa_pod_events_pending", Help: "Pod events waiting to be written because the database was unreachable.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_pod_events_dropped_total", Help: "Pod events given up on: the outbox was full, the store refused them once back, or the server shut down with the database still unreachable.",
		}, []string{"reason"}),
		storeWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_pod_restarts_deferred_total", Help: "Automatic restarts put off because the database was unreachable (they spend no restart attempt).",
		}, []string{"runtime"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.running, m.starts, m.startFailures, m.startSeconds, m.crashes,
		m.restarts, m.restartSuccess, m.restartLimit, m.lost, m.unresponsiveKil, m.pending, m.dropped, m.storeWaits} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
