package coordination

import (
	"context"
	"hash/fnv"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/supervisor"
)

// The fakes below stand in for the database and the supervisor so that
// every scenario runs on simulated time, step by step, the same way every
// run. The real store's SQL is proven against PostgreSQL in internal/store
// and the whole in cmd/ipa with real servers and real plugins; here the
// subject is the coordinator's judgement.

// world is simulated time: the database's clock, and one clock per
// instance (its own offset, paused or not).
type world struct {
	mu     sync.Mutex
	now    time.Time // the database's clock
	clocks []*fakeClock
}

func newWorld() *world {
	return &world{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (w *world) dbNow() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

// clock returns a new instance clock, skew ahead of the database's.
func (w *world) clock(skew time.Duration) *fakeClock {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := &fakeClock{w: w, skew: skew}
	w.clocks = append(w.clocks, c)
	return c
}

// fakeClock is an instance's clock. While paused (the process is stopped)
// none of its timers fire; on resume those due fire at once.
type fakeClock struct {
	w      *world
	skew   time.Duration
	mu     sync.Mutex
	paused bool
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

func (c *fakeClock) Now() time.Time { return c.w.dbNow().Add(c.skew) }

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	t := &fakeTimer{c: c, at: c.Now().Add(d), f: f}
	c.mu.Lock()
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	return t
}

func (c *fakeClock) setPaused(p bool) {
	c.mu.Lock()
	c.paused = p
	c.mu.Unlock()
}

// due takes the timers due now (none while paused).
func (c *fakeClock) due() []*fakeTimer {
	now := c.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.paused {
		return nil
	}
	var out, keep []*fakeTimer
	for _, t := range c.timers {
		switch {
		case t.stopped:
		case !t.at.After(now):
			t.stopped = true
			out = append(out, t)
		default:
			keep = append(keep, t)
		}
	}
	c.timers = keep
	sort.Slice(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

// step is how far simulated time moves between two settles.
const step = 50 * time.Millisecond

// run moves simulated time on by d, step by step: after each step every
// due timer fires and every coordinator finishes what it started.
func (w *world) run(t *testing.T, d time.Duration, coords ...*Coordinator) {
	t.Helper()
	for left := d; left > 0; left -= step {
		w.mu.Lock()
		w.now = w.now.Add(step)
		clocks := slices.Clone(w.clocks)
		w.mu.Unlock()
		for _, c := range clocks {
			for _, tm := range c.due() {
				tm.f()
			}
		}
		settle(t, coords...)
	}
}

// settle waits until no coordinator has work under way.
func settle(t *testing.T, coords ...*Coordinator) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		busy := false
		for _, c := range coords {
			if c.running.Load() != 0 {
				busy = true
			}
		}
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("coordinators did not settle")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// ---------------------------------------------------------------- store

var errDown = ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonStoreUnavailable, "The database is unreachable.")

type instRow struct {
	hb       time.Time
	draining bool
	started  time.Time
}

type leaseRow struct {
	owner string
	epoch int64
	data  []byte
	upd   time.Time
}

// fakeStore is the database: one for all the instances of a scenario. Its
// times are the world's (the database's) clock.
type fakeStore struct {
	w  *world
	mu sync.Mutex
	// down makes every call fail, as in an outage.
	down      bool
	instances map[string]*instRow
	leases    map[string]*leaseRow
	commands  []store.PodCommand
	tasks     map[string]*ipa.Task
	seq       int
	// done hears every deleted command (the store's notice).
	done []func(id string)
}

func newFakeStore(w *world) *fakeStore {
	return &fakeStore{w: w, instances: map[string]*instRow{}, leases: map[string]*leaseRow{}, tasks: map[string]*ipa.Task{}}
}

func (s *fakeStore) lock() error {
	s.mu.Lock()
	if s.down {
		s.mu.Unlock()
		return errDown
	}
	return nil
}

func (s *fakeStore) setDown(d bool) {
	s.mu.Lock()
	s.down = d
	s.mu.Unlock()
}

func (s *fakeStore) Now(context.Context) (time.Time, error) {
	if err := s.lock(); err != nil {
		return time.Time{}, err
	}
	defer s.mu.Unlock()
	return s.w.dbNow(), nil
}

func (s *fakeStore) RegisterInstance(_ context.Context, inst ipa.Instance) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	hb := inst.HeartbeatAt
	if hb.IsZero() {
		hb = s.w.dbNow()
	}
	s.instances[inst.ID] = &instRow{hb: hb, started: inst.StartedAt}
	return nil
}

func (s *fakeStore) Heartbeat(_ context.Context, id string) (bool, error) {
	if err := s.lock(); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	r, ok := s.instances[id]
	if ok {
		r.hb = s.w.dbNow()
	}
	return ok, nil
}

func (s *fakeStore) SetInstanceAddress(context.Context, string, string) error { return nil }

func (s *fakeStore) ListInstances(_ context.Context, now time.Time, ttl time.Duration) ([]ipa.Instance, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []ipa.Instance
	for id, r := range s.instances {
		out = append(out, ipa.Instance{ID: id, HeartbeatAt: r.hb, Alive: !r.hb.Before(now.Add(-ttl)), Draining: r.draining})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (s *fakeStore) SetDraining(_ context.Context, id string, d bool) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	r, ok := s.instances[id]
	if !ok {
		return ipa.Errorf(ipa.ENOTFOUND, "INSTANCE_NOT_FOUND", "No instance with id %q.", id)
	}
	r.draining = d
	return nil
}

func (s *fakeStore) InstanceDraining(_ context.Context, id string) (bool, error) {
	if err := s.lock(); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	r, ok := s.instances[id]
	return ok && r.draining, nil
}

func (s *fakeStore) SaveLease(_ context.Context, owner, taskID string, data []byte, _ time.Time) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if l, ok := s.leases[taskID]; ok && l.owner != owner {
		return ipa.ErrLeaseHeld
	}
	s.leases[taskID] = &leaseRow{owner: owner, data: data, upd: s.w.dbNow()}
	return nil
}

func (s *fakeStore) DeleteLease(_ context.Context, owner, taskID string) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if l, ok := s.leases[taskID]; ok && l.owner == owner {
		delete(s.leases, taskID)
	}
	return nil
}

func (s *fakeStore) ListLeases(_ context.Context, owner string) ([][]byte, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out [][]byte
	for _, l := range s.leases {
		if l.owner == owner {
			out = append(out, l.data)
		}
	}
	return out, nil
}

func (s *fakeStore) LeaseOwner(_ context.Context, taskID string) (string, int64, bool, error) {
	if err := s.lock(); err != nil {
		return "", 0, false, err
	}
	defer s.mu.Unlock()
	l, ok := s.leases[taskID]
	if !ok {
		return "", 0, false, nil
	}
	return l.owner, l.epoch, true, nil
}

func (s *fakeStore) LeaseOwnersOf(_ context.Context, ids []string) (map[string]string, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := map[string]string{}
	for _, id := range ids {
		if l, ok := s.leases[id]; ok {
			out[id] = l.owner
		}
	}
	return out, nil
}

func (s *fakeStore) ClosedLeasedTasks(_ context.Context, owner string) ([]string, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []string
	for id, l := range s.leases {
		if t, ok := s.tasks[id]; ok && l.owner == owner && t.Status.Closed() {
			out = append(out, id)
		}
	}
	return out, nil
}

// deadLocked reports whether the lease's owner is dead at cutoff. Lock held.
func (s *fakeStore) deadLocked(l *leaseRow, me string, cutoff time.Time) bool {
	if l.owner == me {
		return false
	}
	r, ok := s.instances[l.owner]
	return !ok || r.hb.Before(cutoff)
}

func hashOf(id string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return h.Sum32()
}

func (s *fakeStore) claimLocked(me, id string) store.ClaimedLease {
	l := s.leases[id]
	prev := l.owner
	l.owner, l.epoch, l.upd = me, l.epoch+1, s.w.dbNow()
	return store.ClaimedLease{TaskID: id, PreviousOwner: prev, Epoch: l.epoch, Lease: l.data}
}

func (s *fakeStore) sortedLeaseIDs() []string {
	ids := make([]string, 0, len(s.leases))
	for id := range s.leases {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (s *fakeStore) ClaimDeadLeasePartition(_ context.Context, me string, cutoff, _ time.Time) ([]store.ClaimedLease, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var live []string
	for id, r := range s.instances {
		if !r.hb.Before(cutoff) && !r.draining {
			live = append(live, id)
		}
	}
	sort.Strings(live)
	rn := slices.Index(live, me)
	if rn < 0 {
		return nil, nil
	}
	var out []store.ClaimedLease
	for _, id := range s.sortedLeaseIDs() {
		if l := s.leases[id]; s.deadLocked(l, me, cutoff) && int(hashOf(id)%uint32(len(live))) == rn {
			out = append(out, s.claimLocked(me, id))
		}
	}
	return out, nil
}

func (s *fakeStore) DeadLeaseShare(_ context.Context, me string, cutoff time.Time) (int, error) {
	if err := s.lock(); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	dead, live := 0, 0
	for _, l := range s.leases {
		if s.deadLocked(l, me, cutoff) {
			dead++
		}
	}
	for _, r := range s.instances {
		if !r.hb.Before(cutoff) && !r.draining {
			live++
		}
	}
	if dead == 0 {
		return 0, nil
	}
	live = max(live, 1)
	return (dead + live - 1) / live, nil
}

func (s *fakeStore) ClaimDeadLeases(_ context.Context, me string, cutoff time.Time, limit int, _ time.Time) ([]store.ClaimedLease, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []store.ClaimedLease
	for _, id := range s.sortedLeaseIDs() {
		if len(out) >= limit {
			break
		}
		if s.deadLocked(s.leases[id], me, cutoff) {
			out = append(out, s.claimLocked(me, id))
		}
	}
	return out, nil
}

func (s *fakeStore) NextLeaseExpiry(_ context.Context, me string, ttl time.Duration, now time.Time) (time.Time, bool, error) {
	if err := s.lock(); err != nil {
		return time.Time{}, false, err
	}
	defer s.mu.Unlock()
	var first time.Time
	for id, r := range s.instances {
		if id == me || r.hb.Before(now.Add(-ttl)) {
			continue
		}
		holds := false
		for _, l := range s.leases {
			holds = holds || l.owner == id
		}
		if holds && (first.IsZero() || r.hb.Before(first)) {
			first = r.hb
		}
	}
	if first.IsZero() {
		return time.Time{}, false, nil
	}
	return first.Add(ttl), true, nil
}

func (s *fakeStore) AddPodCommand(_ context.Context, c store.PodCommand) (string, error) {
	if err := s.lock(); err != nil {
		return "", err
	}
	defer s.mu.Unlock()
	s.seq++
	c.ID = "cmd-" + string(rune('a'+s.seq))
	s.commands = append(s.commands, c)
	return c.ID, nil
}

func (s *fakeStore) PodCommands(_ context.Context, id string) ([]store.PodCommand, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []store.PodCommand
	for _, c := range s.commands {
		if c.InstanceID == id {
			out = append(out, c)
		}
	}
	return out, nil
}

func (s *fakeStore) DeletePodCommand(_ context.Context, id string) error {
	if err := s.lock(); err != nil {
		return err
	}
	s.commands = slices.DeleteFunc(s.commands, func(c store.PodCommand) bool { return c.ID == id })
	done := slices.Clone(s.done)
	s.mu.Unlock()
	for _, fn := range done {
		fn(id)
	}
	return nil
}

func (s *fakeStore) PodCommandPending(_ context.Context, id string) (bool, error) {
	if err := s.lock(); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.commands, func(c store.PodCommand) bool { return c.ID == id }), nil
}

func (s *fakeStore) GetTask(_ context.Context, id string) (*ipa.Task, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	t, ok := s.tasks[id]
	if !ok {
		return nil, ipa.TaskNotFound(id)
	}
	c := *t
	return &c, nil
}

// ---------------------------------------------------------------- pods

// fakePods is one instance's supervisor: the pods it runs, and what it was
// told to do.
type fakePods struct {
	mu        sync.Mutex
	owned     map[string]bool
	abandoned []string
	taken     []supervisor.Takeover
	stopped   []string
	// block, when set, holds StopPod until it is closed.
	block chan struct{}
}

func newFakePods(ids ...string) *fakePods {
	p := &fakePods{owned: map[string]bool{}}
	for _, id := range ids {
		p.owned[id] = true
	}
	return p
}

func (p *fakePods) Owned() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for id := range p.owned {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func (p *fakePods) Abandon(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.owned, id)
	p.abandoned = append(p.abandoned, id)
}

func (p *fakePods) TakeOver(_ context.Context, taken []supervisor.Takeover) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, tk := range taken {
		p.owned[tk.Lease.TaskID] = true
	}
	p.taken = append(p.taken, taken...)
}

func (p *fakePods) StartPod(_ context.Context, t *ipa.Task, _, _ string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.owned[t.ID] = true
	return true, nil
}

func (p *fakePods) StopPod(_ context.Context, id, _ string) error {
	if p.block != nil {
		<-p.block
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.owned[id] {
		return ipa.ErrPodNotRunning
	}
	delete(p.owned, id)
	p.stopped = append(p.stopped, id)
	return nil
}

func (p *fakePods) RestartPod(context.Context, *ipa.Task) error { return nil }
func (p *fakePods) PausePod(context.Context, string) error      { return nil }
func (p *fakePods) ResumePod(context.Context, string) error     { return nil }
func (p *fakePods) Forget(string)                               {}
func (p *fakePods) Status(string) ipa.PodStatus                 { return ipa.PodStatus{} }

func (p *fakePods) snapshot() (abandoned []string, taken []supervisor.Takeover, stopped []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.abandoned), slices.Clone(p.taken), slices.Clone(p.stopped)
}
