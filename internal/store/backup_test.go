package store

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// TestBackupUnderWritesAndRestore: a backup taken while writers commit holds
// every task acknowledged before it began, opens as a store of its own whose
// projection agrees with its events; a restore is refused while the store is
// open, and afterwards replaces it, keeping the replaced files.
func TestBackupUnderWritesAndRestore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	url := "sqlite://" + filepath.Join(dir, "ipa.db")
	s, err := Open(ctx, url, Options{})
	require.NoError(t, err)
	defer func() { s.Close() }()

	// Writers run across the backup; acked records each acknowledged create.
	var acked sync.Map
	var n atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := uuid.NewString()
				_, err := s.CreateTask(ctx, ipa.CreateTaskRequest{TaskID: id, Actor: "load",
					Created: ipa.TaskCreatedData{Title: "load", Runtime: "demo", RestartPolicy: ipa.DefaultRestartPolicy()}})
				if err != nil {
					t.Error(err)
					return
				}
				acked.Store(id, n.Add(1))
			}
		}()
	}
	for n.Load() < 200 {
		time.Sleep(time.Millisecond)
	}
	var before []string // acknowledged before the backup began
	acked.Range(func(k, _ any) bool { before = append(before, k.(string)); return true })

	backup := filepath.Join(dir, "backups", "copy.db")
	require.NoError(t, os.MkdirAll(filepath.Dir(backup), 0o755))
	require.NoError(t, s.Backup(ctx, backup))
	afterBackup := n.Load()
	for n.Load() < afterBackup+100 { // the server keeps writing after it
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()

	require.ErrorContains(t, s.Backup(ctx, backup), "already exists")
	entries, err := os.ReadDir(filepath.Dir(backup))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file is left beside the backup")

	// The copy is a store of its own.
	copyURL := "sqlite://" + backup
	c, err := Open(ctx, copyURL, Options{})
	require.NoError(t, err)
	for _, id := range before {
		got, err := c.GetTask(ctx, id)
		require.NoError(t, err)
		require.NotNilf(t, got, "task %s was acknowledged before the backup and is missing from it", id)
	}
	changed, err := c.Reproject(ctx, true)
	require.NoError(t, err)
	require.Zero(t, changed)
	inCopy, err := c.CountTasks(ctx, ipa.TaskFilter{})
	require.NoError(t, err)
	require.NoError(t, c.Close())

	// Live: refused, and nothing changed.
	_, err = Restore(ctx, url, backup)
	require.ErrorIs(t, err, ErrInUse)
	total, err := s.CountTasks(ctx, ipa.TaskFilter{})
	require.NoError(t, err)
	require.Greater(t, total, inCopy)
	require.NoError(t, s.Close())

	// A server cannot start while a restore holds the store.
	lock, err := lockFile(lockPath(filepath.Join(dir, "ipa.db")), true)
	require.NoError(t, err)
	_, err = Open(ctx, url, Options{})
	require.ErrorContains(t, err, "being restored")
	require.NoError(t, lock.Close())

	kept, err := Restore(ctx, url, backup)
	require.NoError(t, err)
	require.FileExists(t, kept)

	s, err = Open(ctx, url, Options{})
	require.NoError(t, err)
	got, err := s.CountTasks(ctx, ipa.TaskFilter{})
	require.NoError(t, err)
	require.Equal(t, inCopy, got)
	changed, err = s.Reproject(ctx, true)
	require.NoError(t, err)
	require.Zero(t, changed)
	require.NoError(t, s.Close())

	// The replaced store, with its WAL, still opens and holds everything.
	old, err := Open(ctx, "sqlite://"+kept, Options{})
	require.NoError(t, err)
	got, err = old.CountTasks(ctx, ipa.TaskFilter{})
	require.NoError(t, err)
	require.Equal(t, total, got)
	require.NoError(t, old.Close())
}

func TestRestoreRefusesWhatIsNotABackup(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	url := "sqlite://" + filepath.Join(dir, "ipa.db")

	junk := filepath.Join(dir, "junk.db")
	require.NoError(t, os.WriteFile(junk, []byte("not a database, not at all, no"), 0o644))
	_, err := Restore(ctx, url, junk)
	require.ErrorContains(t, err, "not a usable ipa backup")

	_, err = Restore(ctx, url, filepath.Join(dir, "missing.db"))
	require.Error(t, err)

	// A SQLite file that is not an ipa store.
	other := filepath.Join(dir, "other.db")
	db, err := openFile(other, false)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE notes (body TEXT)`)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	_, err = Restore(ctx, url, other)
	require.ErrorContains(t, err, "not an ipa store")

	// One from a newer ipa.
	newer := filepath.Join(dir, "newer.db")
	s, err := Open(ctx, "sqlite://"+newer, Options{})
	require.NoError(t, err)
	require.NoError(t, s.write.Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (9999, 1)`).Error)
	require.NoError(t, s.Close())
	_, err = Restore(ctx, url, newer)
	require.ErrorContains(t, err, "newer ipa")

	_, err = os.Stat(filepath.Join(dir, "ipa.db"))
	require.ErrorIs(t, err, os.ErrNotExist, "a refused restore writes nothing")
}

func TestBackupRefusesPostgres(t *testing.T) {
	s, err := Open(context.Background(), dbtest.URL(t, "postgres"), Options{})
	require.NoError(t, err)
	defer s.Close()
	require.ErrorContains(t, s.Backup(context.Background(), filepath.Join(t.TempDir(), "x.db")), "pg_dump")
	require.ErrorContains(t, CheckBackupSource("postgres://x@127.0.0.1/x"), "pg_dump")
	require.ErrorContains(t, CheckBackupSource("sqlite://"+filepath.Join(t.TempDir(), "none.db")), "no store to back up")
	_, err = Restore(context.Background(), "postgres://x@127.0.0.1/x", "x.db")
	require.ErrorContains(t, err, "pg_restore")
}
