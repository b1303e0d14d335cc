package service

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Metrics are the services' Prometheus collectors. A nil *Metrics records
// nothing, so tests and tools need not build one.
type Metrics struct {
	tasksCreated *prometheus.CounterVec
	taskDuration *prometheus.HistogramVec
}

// NewMetrics creates the collectors and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		tasksCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_tasks_created_total",
			Help: "Tasks created, by runtime.",
		}, []string{"runtime"}),
		taskDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ipa_task_duration_seconds",
			Help:    "Time from a task's creation to its completion or cancellation.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 12), // 1 s .. ~48 days
		}, []string{"status"}),
	}
	reg.MustRegister(m.tasksCreated, m.taskDuration)
	return m
}

func (m *Metrics) taskCreated(runtime string) {
	if m != nil {
		m.tasksCreated.WithLabelValues(runtime).Inc()
	}
}

func (m *Metrics) taskClosed(t *ipa.Task) {
	if m != nil && t.ClosedAt != nil {
		m.taskDuration.WithLabelValues(string(t.Status)).Observe(t.ClosedAt.Sub(t.CreatedAt).Seconds())
	}
}
