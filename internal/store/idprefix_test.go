package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// TestIDPrefixFilter: TaskFilter.IDPrefix finds exactly the tasks whose id
// starts with it, in any case, on text (SQLite) and uuid (PostgreSQL)
// columns alike, and agrees with Matches.
func TestIDPrefixFilter(t *testing.T) {
	t.Parallel()
	for _, d := range dialects() {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			s := d.open(t)
			now := time.Now()
			var tasks []*ipa.Task
			for _, title := range []string{"a", "b", "c", "d"} {
				tasks = append(tasks, createTask(t, s, title, now))
			}
			for _, tk := range tasks {
				for _, n := range []int{1, 8, 9, 14, 20, 35, 36} {
					p := tk.ID[:n]
					for _, prefix := range []string{p, strings.ToUpper(p)} {
						f := ipa.TaskFilter{IDPrefix: &prefix}
						n, err := s.CountTasks(context.Background(), f)
						require.NoError(t, err)
						want := 0
						for _, o := range tasks {
							if strings.HasPrefix(o.ID, p) {
								want++
								require.True(t, f.Matches(o))
							} else {
								require.False(t, f.Matches(o))
							}
						}
						require.EqualValues(t, want, n, "prefix %q", prefix)
					}
				}
			}
		})
	}
}
