package supervisor

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Lease records that this server owns a task's pod and how to find it again
// after a restart: enough to prove the process is the one we started (pid,
// start ticks, boot id) and to reconnect to it (network, address, protocol).
type Lease struct {
	TaskID          string    `json:"taskId"`
	Runtime         string    `json:"runtime"`
	Attempt         int       `json:"attempt"`
	PID             int       `json:"pid"`
	StartTicks      uint64    `json:"startTicks"` // /proc/<pid>/stat field 22
	BootID          string    `json:"bootId"`
	Network         string    `json:"network"` // "unix" or "tcp"
	Addr            string    `json:"addr"`
	Protocol        string    `json:"protocol"` // go-plugin protocol, "grpc"
	ProtocolVersion int       `json:"protocolVersion"`
	StartedAt       time.Time `json:"startedAt"`
}

// LeaseStore persists the leases of the pods this server owns. Save replaces
// the lease of the same task. Delete of a missing lease is not an error. The
// server keeps leases in its database, one owner per pod, so several servers
// sharing a database never run one task's pod twice.
type LeaseStore interface {
	Save(ctx context.Context, l Lease) error
	Delete(ctx context.Context, taskID string) error
	List(ctx context.Context) ([]Lease, error)
}

// Requeuer is a LeaseStore that can give a pod back to the scheduling queue
// in place of this server's lease of it, when the task's stream says the
// pod is QUEUED: a start granted to this server (or to a dead one whose
// lease it took over) that was never recorded. Requeue reports whether it
// did; a pod in any other state is left as it is.
type Requeuer interface {
	Requeue(ctx context.Context, taskID string) (bool, error)
}

// MemoryLeaseStore is a LeaseStore in memory, for tests: it survives a
// Supervisor (two supervisors can share it) but not the process.
type MemoryLeaseStore struct {
	mu     sync.Mutex
	leases map[string]Lease
}

// NewMemoryLeaseStore returns an empty MemoryLeaseStore.
func NewMemoryLeaseStore() *MemoryLeaseStore {
	return &MemoryLeaseStore{leases: map[string]Lease{}}
}

func (m *MemoryLeaseStore) Save(_ context.Context, l Lease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.leases[l.TaskID] = l
	return nil
}

func (m *MemoryLeaseStore) Delete(_ context.Context, taskID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.leases, taskID)
	return nil
}

func (m *MemoryLeaseStore) List(context.Context) ([]Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Lease, 0, len(m.leases))
	for _, l := range m.leases {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Lease) int { return strings.Compare(a.TaskID, b.TaskID) })
	return out, nil
}

// fencedRecorder makes every pod fact the supervisor writes conditional on
// this instance holding the task's lease (ipa.WithPodFence): a server that
// was paused past the lease TTL, and whose pods another instance took over,
// can never write over the new owner.
type fencedRecorder struct {
	inner Recorder
	owner string
}

func (f fencedRecorder) RecordPodEvent(ctx context.Context, taskID string, ev ipa.NewEvent) (ipa.Event, error) {
	return f.inner.RecordPodEvent(ipa.WithPodFence(ctx, f.owner), taskID, ev)
}

// claimLease records that this instance owns the task's pod before anything
// runs for it (a placeholder lease, with no process yet) and keeps it while a
// restart is pending. Returns ipa.ErrLeaseHeld when another instance owns it.
func (s *Supervisor) claimLease(ctx context.Context, t ipa.Task, attempt int) error {
	return s.cfg.Leases.Save(ctx, Lease{TaskID: t.ID, Runtime: t.Runtime, Attempt: attempt, StartedAt: s.cfg.Now(), BootID: bootID()})
}

// dropLease deletes this instance's lease of the task, logging a failure.
func (s *Supervisor) dropLease(taskID string) {
	ctx, cancel := s.ownCtx()
	defer cancel()
	if err := s.cfg.Leases.Delete(ctx, taskID); err != nil {
		s.log.Error("delete lease", slog.String("task_id", taskID), slog.Any("error", err))
	}
}

// requeue gives a pod whose start was never recorded (the previous owner
// died between its claim and its pod_started; whatever ran of it is killed
// already) back to the scheduling queue, when the stream says it is
// QUEUED: it queues again at its old place and starts once a slot is
// granted to it, so a queued pod runs once even when the server that was
// starting it died. Reports whether it did.
func (s *Supervisor) requeue(ctx context.Context, taskID string, log *slog.Logger) bool {
	rq, ok := s.cfg.Leases.(Requeuer)
	if !ok {
		return false
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RecordTimeout)
	defer cancel()
	done, err := rq.Requeue(rctx, taskID)
	if err != nil {
		log.Error("requeue pod", slog.Any("error", err))
		return false
	}
	if done {
		log.Warn("queued pod whose start was never recorded queued again", slog.String("decision", "requeued"))
	}
	return done
}
