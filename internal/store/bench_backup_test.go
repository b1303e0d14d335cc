package store

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// BenchmarkBackup copies a SQLite store of 20,000 tasks: Backup (VACUUM
// INTO in a read transaction, quick_check, fsync, link) against the floor,
// a plain copy of the database file with fsync (which, unlike Backup, is
// not consistent while the server writes).
func BenchmarkBackup(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	db := filepath.Join(dir, "ipa.db")
	s, err := Open(ctx, "sqlite://"+db, Options{})
	require.NoError(b, err)
	defer s.Close()
	const tasks = 20000
	for i := 0; i < tasks; i++ {
		_, err := s.CreateTask(ctx, ipa.CreateTaskRequest{TaskID: uuid.NewString(), Actor: "bench",
			Created: ipa.TaskCreatedData{Title: fmt.Sprintf("task %d", i), Runtime: "demo", RestartPolicy: ipa.DefaultRestartPolicy()}})
		require.NoError(b, err)
	}
	require.NoError(b, s.write.Exec("PRAGMA wal_checkpoint(TRUNCATE)").Error)
	fi, err := os.Stat(db)
	require.NoError(b, err)
	b.Logf("store: %d tasks, %.1f MiB", tasks, float64(fi.Size())/(1<<20))

	n := 0
	b.Run("backup", func(b *testing.B) {
		b.SetBytes(fi.Size())
		for i := 0; i < b.N; i++ {
			n++
			to := filepath.Join(dir, fmt.Sprintf("backup-%d.db", n))
			require.NoError(b, s.Backup(ctx, to))
			b.StopTimer()
			require.NoError(b, os.Remove(to))
			b.StartTimer()
		}
	})
	b.Run("file-copy", func(b *testing.B) {
		b.SetBytes(fi.Size())
		for i := 0; i < b.N; i++ {
			to := filepath.Join(dir, "copy.db")
			require.NoError(b, copyFile(db, to))
			b.StopTimer()
			require.NoError(b, os.Remove(to))
			b.StartTimer()
		}
	})
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
