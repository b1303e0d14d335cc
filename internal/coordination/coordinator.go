package coordination

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// Defaults of the flags --heartbeat-interval and --lease-ttl.
const (
	DefaultHeartbeatInterval = 2 * time.Second
	DefaultLeaseTTL          = 10 * time.Second
)

// OrphanGrace is how long a plugin whose host is silent keeps running; see
// podapi.SilenceGrace.
func OrphanGrace(ttl time.Duration) time.Duration { return podapi.SilenceGrace(ttl) }

// Config configures a Coordinator.
type Config struct {
	Store   Store
	Pods    Pods
	Clock   Clock // nil: SystemClock
	ID      string
	Version string
	// Interval is the heartbeat interval; TTL how old a heartbeat may grow
	// before its instance counts as dead.
	Interval time.Duration
	TTL      time.Duration
	Logger   *slog.Logger
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

// Coordinator is this instance among the instances sharing the database.
// Start registers it and starts its heartbeat; after every heartbeat (and at
// once when a pod command for it is announced) it runs its duties: let go of
// pods another instance took over, carry out the pod commands sent to it,
// stop pods of tasks closed elsewhere, take over the pods of dead instances,
// and drain when asked. Each duty runs in a goroutine of its own, one at a
// time, so a slow stop never delays a heartbeat. Stop ends it all.
type Coordinator struct {
	cfg     Config
	st      Store
	pods    Pods
	clock   Clock
	log     *slog.Logger
	self    string
	ttl     time.Duration
	started time.Time

	cancel context.CancelFunc
	ctx    context.Context
	done   chan struct{}
	wake   chan struct{}
	tick   chan struct{}

	wg       sync.WaitGroup
	leases   atomic.Bool // a lease check runs
	closed   atomic.Bool // a closed-task check runs
	takeover atomic.Bool // a takeover round runs
	draining atomic.Bool // a drain check runs
	// sched, once scheduling wraps this instance's pods, carries out the
	// restarts and handoff starts other instances send here: through the
	// limits, like every start.
	sched atomic.Pointer[ScheduledPods]
	// drainMu makes drains one at a time: a shutdown handoff marks the
	// instance draining, and the drain duty must not race it for the pods.
	drainMu sync.Mutex

	mu sync.Mutex
	// lastBeat is when (this instance's clock) the last heartbeat was
	// written; a longer gap than the TTL means this instance was counted
	// dead meanwhile.
	lastBeat time.Time
	// cutOff is true from a failed heartbeat until the next one succeeds.
	cutOff bool
	// trustFrom is the moment from which this instance's view of the
	// others' heartbeats is continuous for one TTL: no takeover before.
	trustFrom time.Time
	inflight  map[string]bool // pod command ids being carried out
	expiry    Timer           // runs a takeover round when the next lease holder's heartbeat expires
	beatTimer Timer
	stopped   bool // Stop was called: no more duties start

	waiters commandWaiters
	// running counts the loop's iteration and the duty goroutines under
	// way; tests wait for it to reach zero to step time deterministically.
	running atomic.Int32
}

// expirySlack is how long after a heartbeat's expiry the takeover round
// wakes, so the heartbeat is strictly older than the TTL by then.
const expirySlack = 5 * time.Millisecond

// New returns a Coordinator; Start starts it.
func New(cfg Config) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Coordinator{
		cfg: cfg, st: cfg.Store, pods: cfg.Pods, clock: cfg.Clock, self: cfg.ID, ttl: cfg.TTL,
		log:  cfg.Logger.With(slog.String("component", "coordination")),
		done: make(chan struct{}), wake: make(chan struct{}, 1), tick: make(chan struct{}, 1),
		inflight: map[string]bool{}, waiters: commandWaiters{m: map[string]chan struct{}{}},
	}, nil
}

// ID is this instance's id.
func (c *Coordinator) ID() string { return c.self }

// Start registers the instance (heartbeat now, on the database's clock) and
// starts the heartbeat loop, which runs until Stop whatever ctx does.
// Returns the store's error when the registration fails (Start may then be
// tried again). A Coordinator started already, or stopped, starts nothing.
func (c *Coordinator) Start(ctx context.Context) error {
	c.mu.Lock()
	idle := c.stopped || c.cancel != nil
	c.mu.Unlock()
	if idle {
		return nil
	}
	now := c.clock.Now()
	c.started = now
	if err := c.register(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	c.lastBeat = now
	// A server that has just started has not watched anyone's heartbeat:
	// what it finds may be stale because the database was away, not
	// because their owners died.
	c.trustFrom = now.Add(c.ttl)
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.mu.Unlock()
	c.scheduleBeat()
	go c.loop(c.ctx)
	return nil
}

func (c *Coordinator) register(ctx context.Context) error {
	return c.st.RegisterInstance(ctx, ipa.Instance{ID: c.self, Version: c.cfg.Version, StartedAt: c.started})
}

// scheduleBeat sets the timer of the next heartbeat.
func (c *Coordinator) scheduleBeat() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.beatTimer = c.clock.AfterFunc(c.cfg.Interval, func() { c.signal(c.tick) })
}

// Wake runs the duties now (e.g. a pod command was announced).
func (c *Coordinator) Wake() { c.signal(c.wake) }

// signal hands the loop a tick or a wake-up; running counts it from now
// until the loop has handled it.
func (c *Coordinator) signal(ch chan struct{}) {
	c.running.Add(1)
	select {
	case ch <- struct{}{}:
	default:
		c.running.Add(-1)
	}
}

// CommandQueued is told the instance a pod command was committed for (the
// store's notice); a command for this instance runs the duties at once.
func (c *Coordinator) CommandQueued(instanceID string) {
	if instanceID == c.self {
		c.Wake()
	}
}

// Stop ends the heartbeat loop and the duties and waits for them. The row
// stays: its heartbeat ages, and the instance shows as dead. Safe before
// Start (the Coordinator then never starts) and twice; every call returns
// once the loop and the duties have.
func (c *Coordinator) Stop() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.stopped = true
	if c.beatTimer != nil {
		c.beatTimer.Stop()
	}
	if c.expiry != nil {
		c.expiry.Stop()
	}
	cancel := c.cancel
	c.mu.Unlock()
	if cancel == nil {
		return // never started
	}
	cancel()
	<-c.done
	c.wg.Wait()
}

func (c *Coordinator) loop(ctx context.Context) {
	defer close(c.done)
	for {
		beat := false
		select {
		case <-ctx.Done():
			return
		case <-c.tick:
			beat = true
		case <-c.wake:
		}
		settle := false
		if beat {
			settle = c.beat(ctx)
			c.scheduleBeat()
		}
		if ctx.Err() == nil {
			c.duties(ctx, settle)
		}
		c.running.Add(-1)
	}
}

// beat refreshes the heartbeat. It reports whether this instance's view of
// the store has just become whole again after a gap longer than the TTL (a
// pause of its own) or a heartbeat that failed (the store was out of
// reach): other instances may have taken its pods meanwhile, and it must
// watch their heartbeats for one TTL before it judges any of them dead.
func (c *Coordinator) beat(ctx context.Context) (restored bool) {
	now := c.clock.Now()
	c.mu.Lock()
	paused := now.Sub(c.lastBeat) > c.ttl
	c.mu.Unlock()
	if paused {
		c.log.Warn("heartbeat older than the lease TTL: this instance may have been taken over", slog.Duration("ttl", c.ttl))
	}
	bctx, cancel := context.WithTimeout(ctx, c.cfg.Interval)
	defer cancel()
	ok, err := c.st.Heartbeat(bctx, c.self)
	if err == nil && !ok {
		err = c.register(bctx)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if !c.cutOff {
			c.log.Warn("heartbeat failed: no takeover until the store has been reachable for one lease TTL", slog.Any("error", err))
		}
		c.cutOff = true
		return false
	}
	restored = paused || c.cutOff
	if restored {
		back := c.clock.Now()
		c.trustFrom = back.Add(c.ttl)
		c.log.Warn("store reachable again: watching the other instances' heartbeats for one lease TTL before any takeover", slog.Duration("ttl", c.ttl))
	}
	c.cutOff = false
	c.lastBeat = now
	return restored
}

// canJudge reports whether this instance's view of the store has been
// continuous for one TTL, and if not, when it will be (zero while it is
// still cut off).
func (c *Coordinator) canJudge() (bool, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cutOff {
		return false, time.Time{}
	}
	if c.clock.Now().Before(c.trustFrom) {
		return false, c.trustFrom
	}
	return true, time.Time{}
}

// duties runs the periodic duties; settle (this instance was paused or cut
// off) makes the lease check run first, before anything else.
func (c *Coordinator) duties(ctx context.Context, settle bool) {
	if settle {
		c.checkLeases(ctx)
	} else {
		c.async(ctx, &c.leases, c.checkLeases)
	}
	c.runCommands(ctx)
	c.async(ctx, &c.closed, c.stopClosed)
	c.async(ctx, &c.takeover, c.takeOver)
	c.async(ctx, &c.draining, c.checkDrain)
}

func (c *Coordinator) async(ctx context.Context, busy *atomic.Bool, fn func(context.Context)) {
	if !busy.CompareAndSwap(false, true) {
		return
	}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		busy.Store(false)
		return
	}
	c.wg.Add(1)
	c.running.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		defer c.running.Add(-1)
		defer busy.Store(false)
		fn(ctx)
	}()
}

// checkLeases abandons the pods this instance runs whose lease another
// instance now holds: it was paused or cut off past the TTL and taken over.
// Nothing is recorded (the stream is the new owner's).
func (c *Coordinator) checkLeases(ctx context.Context) {
	owned := c.pods.Owned()
	if len(owned) == 0 {
		return
	}
	owners, err := c.st.LeaseOwnersOf(ctx, owned)
	if err != nil {
		return
	}
	for _, id := range owned {
		if o, ok := owners[id]; ok && o != c.self {
			c.log.Warn("pod taken over by another instance", slog.String("task_id", id), slog.String("owner", o), slog.String("decision", "abandon"))
			c.pods.Abandon(id)
		}
	}
}

// stopClosed stops the pods this instance runs for tasks that are closed:
// the safety net under the stop command a close sends to the owner.
func (c *Coordinator) stopClosed(ctx context.Context) {
	ids, err := c.st.ClosedLeasedTasks(ctx, c.self)
	if err != nil {
		return
	}
	for _, id := range ids {
		c.log.Warn("pod of a closed task", slog.String("task_id", id), slog.String("decision", "stop"))
		if err := c.pods.StopPod(ctx, id, "task closed"); err != nil {
			// Nothing of it runs here (a claim left behind): drop the lease.
			_ = c.st.DeleteLease(ctx, c.self, id)
		}
		c.pods.Forget(id)
	}
}

// checkDrain hands the pods over when this instance was asked to drain.
func (c *Coordinator) checkDrain(ctx context.Context) {
	if len(c.pods.Owned()) == 0 {
		return
	}
	if d, err := c.st.InstanceDraining(ctx, c.self); err != nil || !d {
		return
	}
	if n, err := c.Drain(ctx); n > 0 || err != nil {
		c.log.Info("drained", slog.Int("handed_off", n), slog.Any("error", err))
	}
}

// SetAddress records the address this server listens on in its row.
func (c *Coordinator) SetAddress(ctx context.Context, addr string) error {
	return c.st.SetInstanceAddress(ctx, c.self, addr)
}

// Instances lists the instances sharing the database; alive is judged on the
// database's clock.
func (c *Coordinator) Instances(ctx context.Context) ([]ipa.Instance, error) {
	now, err := c.st.Now(ctx)
	if err != nil {
		return nil, err
	}
	return c.st.ListInstances(ctx, now, c.ttl)
}
