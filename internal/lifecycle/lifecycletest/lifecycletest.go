// Package lifecycletest checks that a service keeps the lifecycle.Service
// contract. Run it under -race: the contract is mostly about what may run
// concurrently.
package lifecycletest

import (
	"context"
	"sync"
	"testing"

	"github.com/ipa-dev/ipa/internal/lifecycle"
)

// Exercise runs the contract on fresh services from newService (each
// subtest builds its own):
//   - Stop before Start returns, twice; a Start after it starts nothing that
//     a further Stop would have to wait for forever (an error is allowed);
//   - Start twice succeeds, and several concurrent Stops all return, as
//     does one more afterwards.
//
// A Stop that does not return hangs the test until go test's timeout, which
// names the stuck goroutine.
func Exercise(t *testing.T, newService func(t *testing.T) lifecycle.Service) {
	t.Helper()
	t.Run("StopBeforeStart", func(t *testing.T) {
		s := newService(t)
		s.Stop()
		s.Stop()
		_ = s.Start(context.Background())
		s.Stop()
	})
	t.Run("StartTwiceStopConcurrently", func(t *testing.T) {
		s := newService(t)
		if err := s.Start(context.Background()); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatalf("second Start: %v", err)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(s.Stop)
		}
		wg.Wait()
		s.Stop()
	})
}
