package store

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// TestOccurredAtFollowsVersions: with no caller time, events are stamped
// inside the write transaction, so under concurrent appends a stream's
// occurredAt never goes backwards as its version goes up.
func TestOccurredAtFollowsVersions(t *testing.T) {
	t.Parallel()
	for _, d := range dialects() {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := d.open(t)
			task := createTask(t, s, "stamped", t0)
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for range 10 {
						_, err := s.Append(context.Background(), ipa.AppendRequest{
							TaskID: task.ID, ExpectedVersion: ipa.AnyVersion, Actor: "t",
							Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
								return []ipa.NewEvent{{Type: "runtime.tick"}}, nil
							},
						})
						require.NoError(t, err)
					}
				})
			}
			wg.Wait()
			evs, err := s.ReadEvents(context.Background(), ipa.EventQuery{TaskID: task.ID, After: 1, Limit: 1000})
			require.NoError(t, err)
			require.Len(t, evs, 80)
			for i := 1; i < len(evs); i++ {
				require.Falsef(t, evs[i].OccurredAt.Before(evs[i-1].OccurredAt),
					"v%d at %s is before v%d at %s", evs[i].Version, evs[i].OccurredAt, evs[i-1].Version, evs[i-1].OccurredAt)
			}
		})
	}
}
