package coordination

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

const (
	testInterval = 500 * time.Millisecond
	testTTL      = 3 * time.Second
)

// scenario is several instances on one fake database.
type scenario struct {
	t      *testing.T
	w      *world
	st     *fakeStore
	coords map[string]*Coordinator
	pods   map[string]*fakePods
	clocks map[string]*fakeClock
}

func newScenario(t *testing.T) *scenario {
	w := newWorld()
	return &scenario{t: t, w: w, st: newFakeStore(w), coords: map[string]*Coordinator{}, pods: map[string]*fakePods{}, clocks: map[string]*fakeClock{}}
}

// start starts instance id, its clock skew ahead of the database's, owning
// the leases of tasks.
func (s *scenario) start(id string, skew time.Duration, tasks ...string) *Coordinator {
	s.t.Helper()
	for _, task := range tasks {
		s.st.leases[task] = &leaseRow{owner: id, data: []byte(`{"taskId":"` + task + `"}`), upd: s.w.dbNow()}
		s.st.tasks[task] = &ipa.Task{ID: task, Status: ipa.StatusActive}
	}
	clock := s.w.clock(skew)
	pods := newFakePods(tasks...)
	c, err := New(Config{Store: s.st, Pods: pods, Clock: clock, ID: id, Version: "test",
		Interval: testInterval, TTL: testTTL, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(s.t, err)
	require.NoError(s.t, c.Start(context.Background()))
	s.st.mu.Lock()
	s.st.done = append(s.st.done, c.CommandDone)
	s.st.mu.Unlock()
	s.t.Cleanup(c.Stop)
	s.coords[id], s.pods[id], s.clocks[id] = c, pods, clock
	return c
}

func (s *scenario) all() []*Coordinator {
	var out []*Coordinator
	for _, c := range s.coords {
		out = append(out, c)
	}
	return out
}

func (s *scenario) run(d time.Duration) { s.w.run(s.t, d, s.all()...) }

// owners returns the lease owner and epoch of every task.
func (s *scenario) owners() map[string]leaseRow {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	out := map[string]leaseRow{}
	for id, l := range s.st.leases {
		out[id] = leaseRow{owner: l.owner, epoch: l.epoch}
	}
	return out
}

// requireNoChange fails when any instance took over or abandoned a pod, or
// a lease changed hands.
func (s *scenario) requireNoChange(before map[string]leaseRow) {
	s.t.Helper()
	require.Equal(s.t, before, s.owners(), "leases changed hands")
	for id, p := range s.pods {
		abandoned, taken, _ := p.snapshot()
		require.Empty(s.t, abandoned, "%s abandoned pods", id)
		require.Empty(s.t, taken, "%s took pods over", id)
	}
}

// A server that has just started has not watched anyone: the stale lease
// of an instance that died long ago is taken only after one TTL of watching.
func TestFreshInstanceWatchesOneTTLBeforeTakeover(t *testing.T) {
	s := newScenario(t)
	s.st.instances["dead"] = &instRow{hb: s.w.dbNow().Add(-time.Hour)}
	s.st.leases["t1"] = &leaseRow{owner: "dead", data: []byte(`{"taskId":"t1"}`)}
	s.st.tasks["t1"] = &ipa.Task{ID: "t1", Status: ipa.StatusActive}
	s.start("b", 0)

	s.run(testTTL - time.Second)
	require.Equal(t, "dead", s.owners()["t1"].owner, "taken over before one TTL of watching")
	s.run(2 * time.Second)
	require.Equal(t, leaseRow{owner: "b", epoch: 1}, s.owners()["t1"])
	_, taken, _ := s.pods["b"].snapshot()
	require.Len(t, taken, 1)
	require.Equal(t, "dead", taken[0].PreviousOwner)
}

// A pause shorter than the TTL costs nothing.
func TestPauseShorterThanTTL(t *testing.T) {
	s := newScenario(t)
	s.start("a", 0, "t1", "t2", "t3")
	s.start("b", 0, "t4")
	s.run(2 * testTTL)
	before := s.owners()

	s.clocks["a"].setPaused(true)
	s.run(testTTL - time.Second)
	s.clocks["a"].setPaused(false)
	s.run(3 * testTTL)
	s.requireNoChange(before)
}

// A pause longer than the TTL is a death: the other instance takes the
// pods over (raising each epoch), and the paused one, when it wakes, lets
// go of them without taking anything itself.
func TestPauseLongerThanTTL(t *testing.T) {
	s := newScenario(t)
	s.start("a", 0, "t1", "t2", "t3")
	s.start("b", 0, "t4")
	s.run(2 * testTTL)

	s.clocks["a"].setPaused(true)
	s.run(2 * testTTL)
	for _, id := range []string{"t1", "t2", "t3"} {
		require.Equal(t, leaseRow{owner: "b", epoch: 1}, s.owners()[id], id)
	}
	s.clocks["a"].setPaused(false)
	s.run(3 * testTTL)

	abandoned, taken, _ := s.pods["a"].snapshot()
	slices.Sort(abandoned)
	require.Equal(t, []string{"t1", "t2", "t3"}, abandoned)
	require.Empty(t, taken, "the paused instance took pods over")
	require.Equal(t, leaseRow{owner: "b"}, s.owners()["t4"])
	_, taken, _ = s.pods["b"].snapshot()
	require.Len(t, taken, 3)
}

// The database away for longer than the TTL: every instance's heartbeat
// ages past it meanwhile, yet no instance takes another's pods once the
// database is back, because each watches the others for one TTL first.
func TestStoreOutageLongerThanTTL(t *testing.T) {
	s := newScenario(t)
	// Their heartbeats at different moments, as in life: whoever comes
	// back first finds the others' heartbeats old.
	s.start("a", 0, "t1", "t2", "t3", "t4")
	s.run(3 * step)
	s.start("b", 0, "t5", "t6", "t7", "t8")
	s.run(3 * step)
	s.start("c", 0, "t9", "t10", "t11", "t12")
	s.run(2 * testTTL)
	before := s.owners()

	s.st.setDown(true)
	s.run(4 * testTTL)
	s.st.setDown(false)
	s.run(4 * testTTL)
	s.requireNoChange(before)

	// Judgement comes back: an instance that really dies now is taken over.
	s.coords["c"].Stop()
	s.run(3 * testTTL)
	for _, id := range []string{"t9", "t10", "t11", "t12"} {
		require.NotEqual(t, "c", s.owners()[id].owner, id)
	}
}

// An outage shorter than the TTL does not delay the takeover of an
// instance that died before it for longer than one TTL after it.
func TestStoreOutageThenDeath(t *testing.T) {
	s := newScenario(t)
	s.start("a", 0, "t1")
	s.start("b", 0, "t2")
	s.run(2 * testTTL)
	s.st.setDown(true)
	s.run(testTTL / 2)
	s.st.setDown(false)
	s.coords["a"].Stop()
	s.run(testTTL / 2)
	require.Equal(t, "a", s.owners()["t1"].owner, "taken over while b's view was not yet whole again")
	s.run(2 * testTTL)
	require.Equal(t, leaseRow{owner: "b", epoch: 1}, s.owners()["t1"])
}

// Clocks an hour apart do not matter: heartbeats are stamped and judged on
// the database's clock.
func TestClockSkewBetweenInstances(t *testing.T) {
	s := newScenario(t)
	s.start("ahead", time.Hour, "t1", "t2")
	s.start("behind", -time.Hour, "t3", "t4")
	s.start("right", 0, "t5")
	s.run(4 * testTTL)
	s.requireNoChange(s.owners())
	for _, l := range s.owners() {
		require.Zero(t, l.epoch)
	}

	s.coords["ahead"].Stop()
	s.run(3 * testTTL)
	require.NotEqual(t, "ahead", s.owners()["t1"].owner)
	require.NotEqual(t, "ahead", s.owners()["t2"].owner)
}

// A late heartbeat racing a takeover: the paused owner's heartbeat lands
// after its leases were claimed. The claim stands (the epochs are raised),
// the late owner lets go of its pods instead of running them twice, and it
// takes nothing of its own back.
func TestLateHeartbeatRacingTakeover(t *testing.T) {
	s := newScenario(t)
	s.start("a", 0, "t1", "t2")
	s.start("b", 0)
	s.run(2 * testTTL)

	s.clocks["a"].setPaused(true)
	// Just past the TTL: b's expiry timer claims at once.
	s.run(testTTL + time.Second)
	owners := s.owners()
	require.Equal(t, leaseRow{owner: "b", epoch: 1}, owners["t1"])
	// a's heartbeat arrives now, late.
	s.clocks["a"].setPaused(false)
	s.run(step)
	require.Equal(t, owners, s.owners(), "a late heartbeat undid a claim")
	abandoned, taken, _ := s.pods["a"].snapshot()
	slices.Sort(abandoned)
	require.Equal(t, []string{"t1", "t2"}, abandoned)
	require.Empty(t, taken)
	s.run(3 * testTTL)
	require.Equal(t, owners, s.owners())
}

// A stop sent to a pod another instance owns returns when the owner has
// carried it out, told by the store's notice: simulated time stands still
// meanwhile, so no periodic look at the command can be what ended the wait.
func TestRoutedStopEndsOnNotice(t *testing.T) {
	s := newScenario(t)
	s.start("a", 0, "t1")
	b := s.start("b", 0)
	s.run(testTTL)
	s.st.mu.Lock()
	s.st.done = append(s.st.done, func(string) {}) // the notice reaches every instance
	s.st.mu.Unlock()

	router := b.Router(s.pods["b"], time.Hour)
	errc := make(chan error, 1)
	go func() { errc <- router.StopPod(context.Background(), "t1", "test") }()
	require.Eventually(t, func() bool {
		cmds, _ := s.st.PodCommands(context.Background(), "a")
		return len(cmds) == 1
	}, 30*time.Second, time.Millisecond)
	// The owner hears of its command (the store's notice) and carries it out.
	s.coords["a"].CommandQueued("a")
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the routed stop did not return after the owner carried it out")
	}
	_, _, stopped := s.pods["a"].snapshot()
	require.Equal(t, []string{"t1"}, stopped)
}

// A stop sent to an owner that dies is sent again to the instance that
// took the pod over, found on the periodic look.
func TestRoutedStopFollowsTakeover(t *testing.T) {
	s := newScenario(t)
	s.start("a", 0, "t1")
	b := s.start("b", 0)
	s.run(2 * testTTL)
	s.coords["a"].Stop()

	router := b.Router(s.pods["b"], time.Hour)
	errc := make(chan error, 1)
	go func() { errc <- router.StopPod(context.Background(), "t1", "test") }()
	require.Eventually(t, func() bool {
		cmds, _ := s.st.PodCommands(context.Background(), "a")
		return len(cmds) == 1
	}, 30*time.Second, time.Millisecond)
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.run(step)
		select {
		case err := <-errc:
			require.NoError(t, err)
			_, _, stopped := s.pods["b"].snapshot()
			require.Equal(t, []string{"t1"}, stopped)
			cmds, _ := s.st.PodCommands(context.Background(), "a")
			require.Empty(t, cmds, "the command to the dead owner was left behind")
			return
		default:
		}
		require.False(t, time.Now().After(deadline), "the routed stop did not follow the takeover")
	}
}
