package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// On SQLite a read transaction (several reads from one snapshot, as
// ConcurrencyLimits makes) must not take the database's write lock: the
// server's writes all go through one writer connection, and a reader holding
// the lock would make every one of them wait up to busy_timeout (5 s) and
// then fail, and the reader itself would wait for any write in progress.

// A read transaction open on the readers' pool leaves the writer alone.
func TestSQLiteReadTransactionLeavesTheWriterAlone(t *testing.T) {
	s := mustOpen(t, dbtest.URL(t, "sqlite"))
	ctx := context.Background()
	createTask(t, s, "before", time.Now())

	tx := s.read.WithContext(ctx).Begin()
	require.NoError(t, tx.Error)
	defer tx.Rollback()
	var n int64
	require.NoError(t, tx.Raw(`SELECT COUNT(*) FROM tasks`).Scan(&n).Error)
	require.EqualValues(t, 1, n)

	// With the read transaction still open, writes commit.
	_, err := s.CreateTask(ctx, createReq())
	require.NoError(t, err, "a write while a read transaction is open")

	// The read transaction still reads its snapshot.
	require.NoError(t, tx.Raw(`SELECT COUNT(*) FROM tasks`).Scan(&n).Error)
	require.EqualValues(t, 1, n)
	require.NoError(t, tx.Commit().Error)
}

// ConcurrencyLimits answers while a write transaction holds the write lock.
func TestSQLiteConcurrencyLimitsDuringAWrite(t *testing.T) {
	s := mustOpen(t, dbtest.URL(t, "sqlite"))
	ctx := context.Background()
	two := 2
	_, err := s.SetConcurrencyLimit(ctx, ipa.LimitGlobal, &two, time.Now())
	require.NoError(t, err)

	// The next write stops between taking its position and COMMIT, with the
	// database's write lock held, until released.
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.afterAllocate = func(context.Context) {
		once.Do(func() {
			close(held)
			<-release
		})
	}
	written := make(chan error, 1)
	go func() {
		_, err := s.CreateTask(ctx, createReq())
		written <- err
	}()
	<-held

	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	limits, err := s.ConcurrencyLimits(rctx)
	close(release)
	require.NoError(t, err, "concurrency limits read while a write holds the lock")
	require.Len(t, limits, 1)
	require.Equal(t, 2, limits[0].Limit)
	require.NoError(t, <-written)
}
