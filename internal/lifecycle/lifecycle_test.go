package lifecycle_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/lifecycle"
)

// ticker is a service built on Base: one goroutine that counts until its
// context ends, and records when it returned.
type ticker struct {
	lifecycle.Base
	name     string
	journal  *journal
	startErr error
	ticks    atomic.Int64
	running  atomic.Bool
}

func (t *ticker) Start(ctx context.Context) error {
	ctx, ok := t.StartInit(ctx)
	if !ok {
		return nil
	}
	if t.startErr != nil {
		return t.startErr
	}
	t.running.Store(true)
	t.Go(func() {
		defer t.running.Store(false)
		defer t.journal.add("stopped " + t.name)
		for ctx.Err() == nil {
			t.ticks.Add(1)
			time.Sleep(time.Millisecond)
		}
	})
	t.journal.add("started " + t.name)
	return nil
}

type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	j.entries = append(j.entries, s)
	j.mu.Unlock()
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.entries...)
}

func TestGroupStopsInReverseOrderAndWaits(t *testing.T) {
	j := &journal{}
	var g lifecycle.Group
	a, b := &ticker{name: "a", journal: j}, &ticker{name: "b", journal: j}
	require.NoError(t, g.Start(t.Context(), a))
	require.True(t, g.Add(lifecycle.OnStop(func() error { j.add("hook"); return nil })))
	require.NoError(t, g.Start(t.Context(), b))
	require.Eventually(t, func() bool { return a.ticks.Load() > 0 && b.ticks.Load() > 0 }, 10*time.Second, time.Millisecond)

	require.NoError(t, g.Stop())
	// Stop returned: every goroutine has, too (the journal entry is the
	// goroutine's last act, so it is there).
	require.False(t, a.running.Load())
	require.False(t, b.running.Load())
	require.Equal(t, []string{"started a", "started b", "stopped b", "hook", "stopped a"}, j.list())

	// Stopped for good: nothing starts again, nothing stops twice.
	require.ErrorIs(t, g.Start(t.Context(), &ticker{name: "c", journal: j}), lifecycle.ErrStopped)
	require.False(t, g.Add(&ticker{name: "d", journal: j}))
	require.NoError(t, g.Stop())
	require.Len(t, j.list(), 5)
}

func TestGroupReportsStopErrorsAndStopsAServiceThatFailedToStart(t *testing.T) {
	j := &journal{}
	var g lifecycle.Group
	closeErr := errors.New("store did not close")
	require.True(t, g.Add(lifecycle.OnStop(func() error { return closeErr })))
	failing := &ticker{name: "f", journal: j, startErr: errors.New("cannot start")}
	require.EqualError(t, g.Start(t.Context(), failing), "cannot start")
	require.NoError(t, g.Start(t.Context(), lifecycle.OnStop(func() error { return nil })))

	err := g.Stop()
	require.ErrorIs(t, err, closeErr)
	require.Equal(t, closeErr.Error(), err.Error())
	require.True(t, failing.Stopping(), "a service whose start failed is stopped too")
	// A later Stop waits for the first and says the same.
	require.ErrorIs(t, g.Stop(), closeErr)
}

func TestAServiceAddedTwiceStopsAtItsLastTurn(t *testing.T) {
	j := &journal{}
	var g lifecycle.Group
	calls := 0
	hook := lifecycle.OnStop(func() error { calls++; j.add("hook"); return nil })
	a, b := &ticker{name: "a", journal: j}, &ticker{name: "b", journal: j}
	require.NoError(t, g.Start(t.Context(), a))
	require.True(t, g.Add(hook))
	require.NoError(t, g.Start(t.Context(), b))
	require.True(t, g.Add(hook))
	require.NoError(t, g.Stop())
	require.Equal(t, 1, calls)
	require.Equal(t, []string{"started a", "started b", "hook", "stopped b", "stopped a"}, j.list())
}

func TestBaseStartStop(t *testing.T) {
	t.Run("StopBeforeStart", func(t *testing.T) {
		j := &journal{}
		s := &ticker{name: "s", journal: j}
		s.Stop()
		require.NoError(t, s.Start(t.Context()))
		require.Empty(t, j.list(), "a service stopped before it started never starts")
		require.Zero(t, s.ticks.Load())
	})
	t.Run("StartTwiceRunsOnce", func(t *testing.T) {
		j := &journal{}
		s := &ticker{name: "s", journal: j}
		require.NoError(t, s.Start(t.Context()))
		require.NoError(t, s.Start(t.Context()))
		s.Stop()
		require.Equal(t, []string{"started s", "stopped s"}, j.list())
	})
	t.Run("ConcurrentStopsAllWait", func(t *testing.T) {
		j := &journal{}
		s := &ticker{name: "s", journal: j}
		require.NoError(t, s.Start(t.Context()))
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				s.Stop()
				// Whichever call returns, the goroutine has ended.
				require.False(t, s.running.Load())
			})
		}
		wg.Wait()
		require.Equal(t, []string{"started s", "stopped s"}, j.list())
	})
	t.Run("StopEndsWhenParentContextDoesNot", func(t *testing.T) {
		j := &journal{}
		s := &ticker{name: "s", journal: j}
		require.NoError(t, s.Start(context.Background()))
		s.Stop()
		require.False(t, s.running.Load())
	})
	t.Run("ParentContextEndsTheWork", func(t *testing.T) {
		j := &journal{}
		s := &ticker{name: "s", journal: j}
		ctx, cancel := context.WithCancel(t.Context())
		require.NoError(t, s.Start(ctx))
		cancel()
		require.Eventually(t, func() bool { return !s.running.Load() }, 10*time.Second, time.Millisecond)
		s.Stop()
	})
	t.Run("GoAfterStopRunsNothing", func(t *testing.T) {
		var b lifecycle.Base
		_, ok := b.StartInit(t.Context())
		require.True(t, ok)
		b.Stop()
		require.False(t, b.Go(func() { t.Error("ran after Stop") }))
	})
}
