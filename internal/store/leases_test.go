package store

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

func testLeases(t *testing.T, s *Store) {
	{
		ctx := context.Background()
		task := createTask(t, s, "leased", t0)
		now := time.Now()

		require.NoError(t, s.SaveLease(ctx, "a", task.ID, []byte(`{"pid":1}`), now))
		require.NoError(t, s.SaveLease(ctx, "a", task.ID, []byte(`{"pid":2}`), now), "the owner may renew its lease")
		err := s.SaveLease(ctx, "b", task.ID, []byte(`{"pid":3}`), now)
		require.Equal(t, ipa.ECONFLICT, ipa.ErrorCode(err), "another owner must be refused")

		got, err := s.ListLeases(ctx, "a")
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.JSONEq(t, `{"pid":2}`, string(got[0]))
		none, err := s.ListLeases(ctx, "b")
		require.NoError(t, err)
		require.Empty(t, none)

		require.NoError(t, s.DeleteLease(ctx, "b", task.ID), "deleting another owner's lease is a no-op")
		got, _ = s.ListLeases(ctx, "a")
		require.Len(t, got, 1)
		require.NoError(t, s.DeleteLease(ctx, "a", task.ID))
		got, _ = s.ListLeases(ctx, "a")
		require.Empty(t, got)
		require.NoError(t, s.SaveLease(ctx, "b", task.ID, []byte(`{"pid":4}`), now), "a released task can be leased by another owner")
	}
}
