package coordination

import (
	"log/slog"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/lifecycle"
	"github.com/ipa-dev/ipa/internal/lifecycle/lifecycletest"
)

// The coordinator and the scheduler are lifecycle.Services.

func TestCoordinatorLifecycle(t *testing.T) {
	lifecycletest.Exercise(t, func(t *testing.T) lifecycle.Service {
		w := newWorld()
		c, err := New(Config{Store: newFakeStore(w), Pods: newFakePods(), Clock: w.clock(0), ID: "a", Version: "test",
			Interval: testInterval, TTL: testTTL, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

// A coordinator stopped before it started never registers.
func TestCoordinatorStoppedBeforeStartNeverRegisters(t *testing.T) {
	w := newWorld()
	st := newFakeStore(w)
	c, err := New(Config{Store: st, Pods: newFakePods(), Clock: w.clock(0), ID: "a", Version: "test",
		Interval: testInterval, TTL: testTTL, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	c.Stop()
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	_, registered := st.instances["a"]
	st.mu.Unlock()
	if registered {
		t.Fatal("a coordinator stopped before Start registered its instance")
	}
}

func TestSchedulerLifecycle(t *testing.T) {
	lifecycletest.Exercise(t, func(t *testing.T) lifecycle.Service {
		_, _, _, s, _ := newSchedFixture()
		s.cfg.Poll = time.Millisecond // the loop turns while Stop runs
		return s
	})
}
