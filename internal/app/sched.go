package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipa-dev/ipa/internal/coordination"
	"github.com/ipa-dev/ipa/internal/supervisor"
)

// slotLeases is the supervisor's lease store that wakes the scheduler when
// a lease goes: a pod's lease is its scheduling slot.
type slotLeases struct {
	coordination.LeaseStore
	sched *coordination.Scheduler
}

func (l slotLeases) Delete(ctx context.Context, taskID string) error {
	err := l.LeaseStore.Delete(ctx, taskID)
	if err == nil {
		l.sched.Kick()
	}
	return err
}

// schedMetrics registers the scheduling metrics: ipa_pods_queued (read from
// the store at each scrape, so every instance reports the same queue) and
// ipa_pod_queue_wait_seconds. It returns the hook the scheduler calls when
// a queued pod started.
func (a *App) schedMetrics() func(taskID string, waited time.Duration) {
	st := a.Store
	a.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ipa_pods_queued",
		Help: "Pods waiting in the queue for a concurrency slot, across every instance.",
	}, func() float64 {
		n, err := st.QueuedCount(context.Background())
		if err != nil {
			return 0
		}
		return float64(n)
	}))
	waited := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ipa_pod_queue_wait_seconds",
		Help:    "Time a queued pod spent in the queue, from its start request to its granted start on this instance.",
		Buckets: prometheus.ExponentialBuckets(0.01, 4, 10), // 10 ms … ~43 min
	})
	a.Registry.MustRegister(waited)
	return func(_ string, d time.Duration) { waited.Observe(d.Seconds()) }
}

// Requeue gives a pod whose granted start was never recorded back to the
// queue, and has the scheduler look at it.
func (l slotLeases) Requeue(ctx context.Context, taskID string) (bool, error) {
	done, err := l.LeaseStore.Requeue(ctx, taskID)
	if done {
		l.sched.Kick()
	}
	return done, err
}

// The supervisor finds the requeue by its interface: keep it there.
var _ supervisor.Requeuer = slotLeases{}
