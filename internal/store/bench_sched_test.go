package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// BenchmarkSchedQueue is the cost of a start (Admit under a limit with
// room) and of a completion (the lease deleted, then a dispatch that grants
// the freed slot to the head of the queue and the granted pod's lease saved)
// with 10,000 tasks queued behind a full limit, beside the same with no
// queue, in the same run.
func BenchmarkSchedQueue(b *testing.B) {
	ctx := context.Background()
	for _, d := range benchDialects() {
		for _, queued := range []int{0, 10_000} {
			b.Run(fmt.Sprintf("%s/queue=%d", d.name, queued), func(b *testing.B) {
				s := d.open(b)
				seedTasksWith(b, s, queued+2*b.N+100, seedOptions{row: func(k int, _ int64, r *seedRow) {
					r.status, r.closedAt, r.parent = ipa.StatusInactive, nil, nil
				}})
				ids, err := queryIDs(ctx, s, `SELECT id FROM tasks ORDER BY created_at, id`)
				require.NoError(b, err)
				now := time.Now()
				// runtime:demo stands for the full limit the queue waits
				// behind; global has room for every start measured.
				const running = 50
				_, err = s.SetConcurrencyLimit(ctx, "runtime:demo", limit(running), now)
				require.NoError(b, err)
				_, err = s.SetConcurrencyLimit(ctx, ipa.LimitGlobal, limit(1_000_000), now)
				require.NoError(b, err)
				for _, id := range ids[:running] {
					require.NoError(b, s.SaveLease(ctx, "me", id, []byte(`{}`), now))
				}
				q := ids[running : running+queued]
				for i, id := range q {
					require.NoError(b, s.write.Exec(`INSERT INTO pod_queue (task_id, instance_id, trigger, priority, queued_at, granted) VALUES (?, 'me', 'manual', 0, ?, ?)`,
						id, int64(i), false).Error)
				}
				rest := ids[running+queued:]
				held := ids[:running]
				b.ResetTimer()
				var startNs, completeNs time.Duration
				for i := range b.N {
					// A start: Admit of a task no full limit covers (an
					// exec task under global only).
					t := &ipa.Task{ID: rest[i], Runtime: "exec"}
					t0 := time.Now()
					if _, _, _, err := s.Admit(ctx, t, "me", ipa.TriggerManual, now); err != nil {
						b.Fatal(err)
					}
					startNs += time.Since(t0)
					_, _ = s.ReleaseGrant(ctx, rest[i])
					// A completion: a running pod's lease goes, the queue
					// is dispatched, the granted pod starts (its lease).
					t0 = time.Now()
					if err := s.DeleteLease(ctx, "me", held[i%len(held)]); err != nil {
						b.Fatal(err)
					}
					grants, err := s.Dispatch(ctx, "me", now.Add(-time.Hour), now)
					if err != nil {
						b.Fatal(err)
					}
					next := held[i%len(held)]
					if len(grants) > 0 {
						next = grants[0].TaskID
					}
					if err := s.SaveLease(ctx, "me", next, []byte(`{}`), now); err != nil {
						b.Fatal(err)
					}
					completeNs += time.Since(t0)
					held[i%len(held)] = next
				}
				b.ReportMetric(float64(startNs.Microseconds())/float64(b.N), "start-µs/op")
				b.ReportMetric(float64(completeNs.Microseconds())/float64(b.N), "complete-µs/op")
			})
		}
	}
}
