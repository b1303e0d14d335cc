package ipa

import (
	"context"
	"time"
)

// Instance is one `ipa serve` process sharing the database.
type Instance struct {
	ID          string
	Address     string // "" when unknown
	Version     string
	StartedAt   time.Time
	HeartbeatAt time.Time
	Alive       bool // heartbeat younger than the lease TTL
	Draining    bool
	Pods        int // pod leases it holds
}

// ErrLeaseLost is returned when an instance writes a pod fact for a task
// whose lease another instance now holds (it was taken over while this one
// was paused or cut off): the write is refused, so a former owner can never
// write over the new one.
var ErrLeaseLost = Errorf(ECONFLICT, "LEASE_LOST", "Another server instance took over this task's pod.")

type podFenceKey struct{}

// WithPodFence makes the pod facts appended with ctx conditional on owner
// holding the task's pod lease (or on no instance holding it): the store
// checks the lease row in the same transaction as the append and refuses
// with ErrLeaseLost otherwise.
func WithPodFence(ctx context.Context, owner string) context.Context {
	if owner == "" {
		return ctx
	}
	return context.WithValue(ctx, podFenceKey{}, owner)
}

// PodFenceFrom returns the owner WithPodFence put in ctx.
func PodFenceFrom(ctx context.Context) (string, bool) {
	o, ok := ctx.Value(podFenceKey{}).(string)
	return o, ok
}
