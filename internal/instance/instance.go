// Package instance keeps this server's row in the instances table: it
// registers the server when it starts and refreshes its heartbeat every
// interval, so the other servers sharing the database can tell it is alive.
// An instance whose heartbeat is older than the lease TTL is dead; the live
// ones take over its pods. After each heartbeat the registry runs the
// server's periodic duties (Config.Tick): pod commands, closed tasks,
// takeover.
package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// Defaults of the flags --heartbeat-interval and --lease-ttl.
const (
	DefaultHeartbeatInterval = 2 * time.Second
	DefaultLeaseTTL          = 10 * time.Second
)

// Store is what the registry needs of the store.
type Store interface {
	RegisterInstance(ctx context.Context, inst ipa.Instance) error
	Heartbeat(ctx context.Context, id string, now time.Time) (bool, error)
}

// Config configures a Registry.
type Config struct {
	Store    Store
	ID       string
	Version  string
	Address  string
	Interval time.Duration // heartbeat interval
	TTL      time.Duration // a heartbeat older than this means dead
	// Tick runs after every heartbeat attempt, in the registry's goroutine;
	// paused is true when the previous heartbeat is older than the TTL (this
	// process was stopped or cut off long enough to be counted dead).
	Tick   func(ctx context.Context, paused bool)
	Logger *slog.Logger
}

// Validate checks the timing: the TTL must leave room for at least two
// missed heartbeats, so one slow write never makes a live instance dead.
func (c Config) Validate() error {
	if c.Interval <= 0 || c.TTL <= 0 {
		return errors.New("--heartbeat-interval and --lease-ttl must be positive")
	}
	if c.TTL < 2*c.Interval {
		return fmt.Errorf("--lease-ttl (%s) must be at least twice --heartbeat-interval (%s)", c.TTL, c.Interval)
	}
	return nil
}

// OrphanGrace is how long a plugin whose host is silent keeps running; see
// podapi.SilenceGrace.
func OrphanGrace(ttl time.Duration) time.Duration { return podapi.SilenceGrace(ttl) }

// Registry is one server's registration. Start it, Stop it.
type Registry struct {
	cfg     Config
	log     *slog.Logger
	started time.Time

	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	lastBeat time.Time
	wake     chan struct{}
}

// Start registers the instance (heartbeat now) and starts the heartbeat
// loop. Returns the store's error when the registration fails.
func Start(ctx context.Context, cfg Config) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	now := time.Now()
	r := &Registry{cfg: cfg, log: cfg.Logger.With(slog.String("component", "instance")), started: now, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	if err := r.register(ctx, now); err != nil {
		return nil, err
	}
	r.lastBeat = now
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	go r.loop(loopCtx)
	return r, nil
}

func (r *Registry) register(ctx context.Context, now time.Time) error {
	return r.cfg.Store.RegisterInstance(ctx, ipa.Instance{ID: r.cfg.ID, Address: r.cfg.Address, Version: r.cfg.Version, StartedAt: r.started, HeartbeatAt: now})
}

// Wake runs the periodic duties now (e.g. a pod command was announced).
func (r *Registry) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Stop ends the heartbeat loop and waits for it. Idempotent.
func (r *Registry) Stop() {
	if r == nil || r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
}

func (r *Registry) loop(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		beat := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			beat = true
		case <-r.wake:
		}
		paused := false
		if beat {
			paused = r.beat(ctx)
		}
		if r.cfg.Tick != nil && ctx.Err() == nil {
			r.cfg.Tick(ctx, paused)
		}
	}
}

// beat refreshes the heartbeat; it reports whether the previous one is older
// than the TTL.
func (r *Registry) beat(ctx context.Context) bool {
	now := time.Now()
	r.mu.Lock()
	paused := now.Sub(r.lastBeat) > r.cfg.TTL
	r.mu.Unlock()
	if paused {
		r.log.Warn("heartbeat older than the lease TTL: this instance may have been taken over", slog.Duration("ttl", r.cfg.TTL))
	}
	bctx, cancel := context.WithTimeout(ctx, r.cfg.Interval)
	defer cancel()
	ok, err := r.cfg.Store.Heartbeat(bctx, r.cfg.ID, now)
	if err == nil && !ok {
		err = r.register(bctx, now)
	}
	if err != nil {
		r.log.Warn("heartbeat failed", slog.Any("error", err))
		return paused
	}
	r.mu.Lock()
	r.lastBeat = now
	r.mu.Unlock()
	return paused
}
