package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrInstanceInUse is HoldInstanceID's answer when another running server
// holds the same instance id on this database.
var ErrInstanceInUse = errors.New("another running server uses this instance id on the database")

// The instance lock is asked for instanceLockTries times, instanceLockRetry
// apart.
const (
	instanceLockTries = 10
	instanceLockRetry = 200 * time.Millisecond
)

// HoldInstanceID keeps, on PostgreSQL, a session advisory lock named after
// the instance id on a connection of its own, for as long as the server
// runs: a second server started with the same id (the same --instance-id
// on another machine, or the default id of a copied data dir) is refused
// before it registers, reconciles or starts anything, instead of running
// the first one's pods a second time. The database drops the lock with the
// connection, so a server killed by SIGKILL leaves nothing behind; the
// check is made at start-up (a connection lost later is not taken again).
// On SQLite, where the data-dir and store locks already keep a second
// server out, it does nothing. Call release on shutdown.
func (s *Store) HoldInstanceID(ctx context.Context, id string) (release func(), err error) {
	if !s.postgres() || id == "" {
		return func() {}, nil
	}
	conn, err := pgx.Connect(ctx, s.url)
	if err != nil {
		return nil, s.wrap(fmt.Errorf("store: instance lock: %w", err))
	}
	var ok bool
	// A holder killed a moment ago may not have been noticed gone by the
	// database yet: ask again for a little while before refusing.
	for try := 0; ; try++ {
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended('ipa-instance:' || $1, 0))`, id).Scan(&ok); err != nil {
			conn.Close(context.WithoutCancel(ctx))
			return nil, s.wrap(fmt.Errorf("store: instance lock: %w", err))
		}
		if ok || try == instanceLockTries-1 {
			break
		}
		select {
		case <-ctx.Done():
			conn.Close(context.WithoutCancel(ctx))
			return nil, ctx.Err()
		case <-time.After(instanceLockRetry):
		}
	}
	if !ok {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("%w: %q (give each server its own --instance-id)", ErrInstanceInUse, id)
	}
	return func() { _ = conn.Close(context.Background()) }, nil
}
