package store

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// BenchmarkTaskCount counts tasks by status from the counters (what
// taskCount and totalCount use) beside the COUNT(*) over the rows they
// replace, in the same run on the same data. 100k rows; 1M with
// IPA_BENCH_LARGE=1.
func BenchmarkTaskCount(b *testing.B) {
	n := 100_000
	if os.Getenv("IPA_BENCH_LARGE") == "1" {
		n = 1_000_000
	}
	ctx := context.Background()
	for _, d := range benchDialects() {
		b.Run(d.name, func(b *testing.B) {
			s := d.open(b)
			seedTasks(b, s, n)
			for _, f := range []struct {
				name   string
				filter ipa.TaskFilter
			}{
				{"status", ipa.TaskFilter{Statuses: []ipa.TaskStatus{ipa.StatusActive}}},
				{"all", ipa.TaskFilter{}},
			} {
				fast, err := s.CountTasks(ctx, f.filter)
				require.NoError(b, err)
				slow, err := s.countTasksScan(ctx, f.filter)
				require.NoError(b, err)
				require.Equal(b, slow, fast)
				b.Run(fmt.Sprintf("%s/counters/%d", f.name, n), func(b *testing.B) {
					run(b, 1, func() error { _, err := s.CountTasks(ctx, f.filter); return err })
				})
				b.Run(fmt.Sprintf("%s/countStar/%d", f.name, n), func(b *testing.B) {
					run(b, 1, func() error { _, err := s.countTasksScan(ctx, f.filter); return err })
				})
			}
		})
	}
}
