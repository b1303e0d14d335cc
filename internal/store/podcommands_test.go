package store

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/pgtest"
)

// A pod command's arrival and its end are announced: on SQLite to the
// watchers of the same store at once, on PostgreSQL to every instance
// listening (NOTIFY at commit). The caller waiting for a command sent to
// another instance is woken by the end notice, not by polling.
func TestPodCommandNotices(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			url := "sqlite://" + filepath.Join(t.TempDir(), "ipa.db")
			if backend == "postgres" {
				url = pgtest.Start(t)
			}
			s := mustOpen(t, url)
			listener := s
			if backend == "postgres" {
				listener = mustOpen(t, url) // another instance
				lctx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				listening := make(chan struct{}, 1)
				go func() {
					defer close(done)
					listener.ListenCommits(lctx, func(CommitNotice) {}, func() {
						select {
						case listening <- struct{}{}:
						default:
						}
					})
				}()
				t.Cleanup(func() { cancel(); <-done })
				<-listening
			}
			var mu sync.Mutex
			var queued, done []string
			listener.WatchPodCommands(func(id string) { mu.Lock(); queued = append(queued, id); mu.Unlock() })
			listener.WatchPodCommandsDone(func(id string) { mu.Lock(); done = append(done, id); mu.Unlock() })
			heard := func(list *[]string, want string) func() bool {
				return func() bool {
					mu.Lock()
					defer mu.Unlock()
					for _, v := range *list {
						if v == want {
							return true
						}
					}
					return false
				}
			}

			task := createTask(t, s, "commanded", t0)
			id, err := s.AddPodCommand(ctx, PodCommand{TaskID: task.ID, InstanceID: "owner", Command: "stop", CreatedAt: time.Now()})
			require.NoError(t, err)
			require.Eventually(t, heard(&queued, "owner"), 10*time.Second, time.Millisecond, "the owner was not told of its command")
			pending, err := s.PodCommandPending(ctx, id)
			require.NoError(t, err)
			require.True(t, pending)

			require.NoError(t, s.DeletePodCommand(ctx, id))
			require.Eventually(t, heard(&done, id), 10*time.Second, time.Millisecond, "the waiter was not told the command ended")
			pending, err = s.PodCommandPending(ctx, id)
			require.NoError(t, err)
			require.False(t, pending)

			// Deleting it again announces nothing more.
			require.NoError(t, s.DeletePodCommand(ctx, id))
			time.Sleep(100 * time.Millisecond)
			mu.Lock()
			n := 0
			for _, v := range done {
				if v == id {
					n++
				}
			}
			mu.Unlock()
			require.Equal(t, 1, n, "a second delete announced the command again")
		})
	}
}
