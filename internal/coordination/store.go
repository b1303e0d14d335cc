package coordination

import (
	"context"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/supervisor"
)

// Heartbeats is the part of the store that keeps the instances' rows.
// Heartbeat times are the database's clock: RegisterInstance and Heartbeat
// stamp them there, and Now reads it.
type Heartbeats interface {
	// Now returns the database's clock (the process's clock on SQLite,
	// where there is one instance).
	Now(ctx context.Context) (time.Time, error)
	RegisterInstance(ctx context.Context, inst ipa.Instance) error
	// Heartbeat reports false when the instance has no row.
	Heartbeat(ctx context.Context, id string) (bool, error)
	SetInstanceAddress(ctx context.Context, id, addr string) error
	ListInstances(ctx context.Context, now time.Time, ttl time.Duration) ([]ipa.Instance, error)
	SetDraining(ctx context.Context, id string, draining bool) error
	InstanceDraining(ctx context.Context, id string) (bool, error)
}

// Leases is the part of the store that keeps pod leases: one owner per pod
// and a fencing epoch raised whenever it changes hands.
type Leases interface {
	SaveLease(ctx context.Context, owner, taskID string, data []byte, now time.Time) error
	DeleteLease(ctx context.Context, owner, taskID string) error
	ListLeases(ctx context.Context, owner string) ([][]byte, error)
	LeaseOwner(ctx context.Context, taskID string) (owner string, epoch int64, found bool, err error)
	LeaseOwnersOf(ctx context.Context, ids []string) (map[string]string, error)
	ClosedLeasedTasks(ctx context.Context, owner string) ([]string, error)
	ClaimDeadLeasePartition(ctx context.Context, me string, cutoff, now time.Time) ([]store.ClaimedLease, error)
	DeadLeaseShare(ctx context.Context, me string, cutoff time.Time) (int, error)
	ClaimDeadLeases(ctx context.Context, me string, cutoff time.Time, limit int, now time.Time) ([]store.ClaimedLease, error)
	NextLeaseExpiry(ctx context.Context, me string, ttl time.Duration, now time.Time) (at time.Time, ok bool, err error)
}

// Commands is the part of the store that carries pod commands: intents for
// the instance that owns a pod. DeletePodCommand announces the command's
// end (Coordinator.CommandDone hears it), AddPodCommand its arrival
// (Coordinator.CommandQueued).
type Commands interface {
	AddPodCommand(ctx context.Context, c store.PodCommand) (string, error)
	PodCommands(ctx context.Context, instanceID string) ([]store.PodCommand, error)
	DeletePodCommand(ctx context.Context, id string) error
	PodCommandPending(ctx context.Context, id string) (bool, error)
}

// Tasks reads a task (a command names it; a takeover settles it).
type Tasks interface {
	GetTask(ctx context.Context, id string) (*ipa.Task, error)
}

// Store is everything coordination reads and writes.
type Store interface {
	Heartbeats
	Leases
	Commands
	Tasks
}

// Pods is this instance's supervisor as coordination drives it.
type Pods interface {
	// Owned lists the tasks this instance runs a pod for or has a restart
	// pending for.
	Owned() []string
	// Abandon lets go of a pod another instance took over, recording nothing.
	Abandon(taskID string)
	// TakeOver settles pods whose leases this instance claimed from dead ones.
	TakeOver(ctx context.Context, taken []supervisor.Takeover)
	StartPod(ctx context.Context, t *ipa.Task, trigger, causationID string) (bool, error)
	StopPod(ctx context.Context, taskID, reason string) error
	RestartPod(ctx context.Context, t *ipa.Task) error
	PausePod(ctx context.Context, taskID string) error
	ResumePod(ctx context.Context, taskID string) error
	Forget(taskID string)
}
