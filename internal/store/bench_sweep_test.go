package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app"
	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// BenchmarkDeadlineSweep measures the rate at which passed deadlines are
// swept: n open tasks whose deadlines have passed are seeded into a fresh
// database (outside the timer), then
//
//	sweeper   a server is assembled on it (package app, as ipa serve does)
//	          and its deadline timer cancels them: store.DueTasks batches,
//	          each task cancelled through TaskService (pod stop, children,
//	          task_cancelled event, counters, live-feed publish); timed from
//	          assembly until none is open
//	rawUpdate the floor: the same due rows read in batches of 100 from the
//	          same index and closed by one UPDATE each, one transaction per
//	          batch, no event
//
// 10k tasks; 100k with IPA_BENCH_LARGE=1. Run with -benchtime 1x.
func BenchmarkDeadlineSweep(b *testing.B) {
	n := 10_000
	if benchLarge() {
		n = 100_000
	}
	ctx := context.Background()
	open := ipa.TaskFilter{Statuses: []ipa.TaskStatus{ipa.StatusActive, ipa.StatusInactive}}
	cancelled := ipa.TaskFilter{Statuses: []ipa.TaskStatus{ipa.StatusCancelled}}
	for _, backend := range dbtest.Backends {
		b.Run(backend, func(b *testing.B) {
			for _, p := range []struct {
				name string
				fn   func(b *testing.B, url string) time.Duration
			}{
				{"sweeper", func(b *testing.B, url string) time.Duration {
					start := time.Now()
					a := apptest.New(b, url, auth.ModeAuto, func(c *app.Config) { c.DeadlineInterval = 10 * time.Millisecond })
					deadline := time.Now().Add(30 * time.Minute)
					for {
						left, err := a.Store.CountTasks(ctx, open)
						require.NoError(b, err)
						if left == 0 {
							break
						}
						require.True(b, time.Now().Before(deadline), "%d tasks still open", left)
						time.Sleep(5 * time.Millisecond)
					}
					took := time.Since(start)
					b.StopTimer()
					got, err := a.Store.CountTasks(ctx, cancelled)
					require.NoError(b, err)
					require.EqualValues(b, n, got)
					require.NoError(b, a.Close())
					return took
				}},
				{"rawUpdate", func(b *testing.B, url string) time.Duration {
					s := openStore(b, url)
					start := time.Now()
					got, err := store.RawSweep(ctx, s, time.Now())
					require.NoError(b, err)
					took := time.Since(start)
					require.Equal(b, n, got)
					return took
				}},
			} {
				b.Run(fmt.Sprintf("%s/%d", p.name, n), func(b *testing.B) {
					var took time.Duration
					for range b.N {
						b.StopTimer()
						url := dbtest.URL(b, backend)
						s := openStore(b, url)
						store.SeedDue(b, s, n)
						require.NoError(b, s.Close())
						b.StartTimer()
						took += p.fn(b, url)
					}
					b.ReportMetric(float64(n*b.N)/took.Seconds(), "tasks/s")
				})
			}
		})
	}
}

func benchLarge() bool { return store.BenchLarge() }

func openStore(tb testing.TB, url string) *store.Store {
	tb.Helper()
	s, err := store.Open(context.Background(), url, store.Options{})
	require.NoError(tb, err)
	tb.Cleanup(func() { s.Close() })
	return s
}
