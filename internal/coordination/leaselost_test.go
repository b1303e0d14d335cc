package coordination

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// losingPods is an instance's supervisor whose pod is taken over while it
// stops it: the stop's pod fact is fenced off (ipa.ErrLeaseLost), as the
// store does when another instance holds the lease by then. moveTo, when
// set, is the instance that took the pod over.
type losingPods struct {
	*fakePods
	s      *scenario
	moveTo string
	calls  int
}

func (p *losingPods) StopPod(_ context.Context, id, _ string) error {
	p.calls++
	if p.moveTo != "" {
		p.s.st.mu.Lock()
		p.s.st.leases[id].owner = p.moveTo
		p.s.st.mu.Unlock()
		other := p.s.pods[p.moveTo]
		other.mu.Lock()
		other.owned[id] = true
		other.mu.Unlock()
	}
	return ipa.ErrLeaseLost
}

// A stop whose local run lost the lease mid-way is carried out by the
// instance that took the pod over; the client never sees LEASE_LOST, which
// the contract does not know.
func TestStopAfterLeaseLostFollowsNewOwner(t *testing.T) {
	s := newScenario(t)
	s.start("a", 0)
	b := s.start("b", 0, "t1")
	s.run(testTTL)

	router := b.Router(&losingPods{fakePods: s.pods["b"], s: s, moveTo: "a"}, time.Hour)
	errc := make(chan error, 1)
	go func() { errc <- router.StopPod(context.Background(), "t1", "test") }()
	require.Eventually(t, func() bool {
		cmds, _ := s.st.PodCommands(context.Background(), "a")
		return len(cmds) == 1
	}, 30*time.Second, time.Millisecond, "the stop was not sent on to the new owner")
	s.coords["a"].CommandQueued("a")
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the stop did not return after the new owner carried it out")
	}
	_, _, stopped := s.pods["a"].snapshot()
	require.Equal(t, []string{"t1"}, stopped)
}

// A lease that the fence says moved while the store keeps naming this
// instance is retried a few times, then answered with a retryable
// UNAVAILABLE: never LEASE_LOST, never an endless loop.
func TestStopWithUnsettledLeaseIsRetryable(t *testing.T) {
	s := newScenario(t)
	b := s.start("b", 0, "t1")
	s.run(testTTL)

	pods := &losingPods{fakePods: s.pods["b"], s: s}
	err := b.Router(pods, time.Hour).StopPod(context.Background(), "t1", "test")
	require.Equal(t, ipa.EUNAVAILABLE, ipa.ErrorCode(err), "%v", err)
	require.Equal(t, ipa.ReasonStoreUnavailable, ipa.ErrorReason(err))
	require.Equal(t, 1+maxLeaseLostRetries, pods.calls)
}

// fencedStart is a supervisor whose pod_started is fenced off: another
// instance took the pod over between the claim and the record.
type fencedStart struct{ *fakePods }

func (fencedStart) StartPod(context.Context, *ipa.Task, string, string) (bool, error) {
	return false, ipa.ErrLeaseLost
}

// A start that lost its lease to another instance answers as a start that
// found a pod running (it runs there), not LEASE_LOST.
func TestStartAfterLeaseLostFindsPodRunning(t *testing.T) {
	s := newScenario(t)
	b := s.start("b", 0)
	started, err := b.Router(fencedStart{s.pods["b"]}, time.Hour).StartPod(context.Background(), &ipa.Task{ID: "t1"}, ipa.TriggerManual, "")
	require.NoError(t, err)
	require.False(t, started)
}
