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

// testNextLeaseExpiry: the takeover's wake-up is the earliest heartbeat,
// still younger than the TTL, of another instance that holds a lease, plus
// the TTL; instances without leases, instances already dead and the caller
// itself do not count.
func testNextLeaseExpiry(t *testing.T, s *Store) {
	ctx := context.Background()
	const ttl = 3 * time.Second
	base := time.Now().Truncate(time.Millisecond)
	if !s.postgres() {
		_, ok, err := s.NextLeaseExpiry(ctx, "me", ttl, base)
		require.NoError(t, err)
		require.False(t, ok, "SQLite has one instance: nothing to take over")
		return
	}
	register := func(id string, beat time.Time) {
		require.NoError(t, s.RegisterInstance(ctx, ipa.Instance{ID: id, Version: "test", StartedAt: base, HeartbeatAt: beat}))
	}
	register("me", base.Add(-time.Second))
	register("idle", base.Add(-2500*time.Millisecond))
	register("dead", base.Add(-10*time.Second))
	register("old", base.Add(-2*time.Second))
	register("new", base.Add(-time.Second))

	_, ok, err := s.NextLeaseExpiry(ctx, "me", ttl, base)
	require.NoError(t, err)
	require.False(t, ok, "no other instance holds a lease")

	lease := func(owner string) {
		task := createTask(t, s, "leased by "+owner, t0)
		require.NoError(t, s.SaveLease(ctx, owner, task.ID, []byte(`{}`), base))
	}
	lease("me")
	lease("dead")
	_, ok, err = s.NextLeaseExpiry(ctx, "me", ttl, base)
	require.NoError(t, err)
	require.False(t, ok, "a dead holder's expiry is past: the regular rounds settle it")

	lease("new")
	at, ok, err := s.NextLeaseExpiry(ctx, "me", ttl, base)
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, at.Equal(base.Add(-time.Second+ttl)), "expiry %s", at)

	lease("old")
	at, ok, err = s.NextLeaseExpiry(ctx, "me", ttl, base)
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, at.Equal(base.Add(-2*time.Second+ttl)), "the earliest live holder's heartbeat counts: %s", at)

	at, ok, err = s.NextLeaseExpiry(ctx, "old", ttl, base)
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, at.Equal(base.Add(-time.Second+ttl)), "for another caller, its own lease does not count and mine does: %s", at)
}

// testAdoptInstance: a server that changed its id takes over its leases and
// pod commands under the former one; other instances' leases stay theirs.
func testAdoptInstance(t *testing.T, s *Store) {
	ctx := context.Background()
	now := time.Now()
	mine := createTask(t, s, "leased under the former id", t0)
	other := createTask(t, s, "leased by another instance", t0)
	require.NoError(t, s.RegisterInstance(ctx, ipa.Instance{ID: "host:/srv/ipa", Version: "old", StartedAt: now, HeartbeatAt: now}))
	require.NoError(t, s.SaveLease(ctx, "host:/srv/ipa", mine.ID, []byte(`{"pid":1}`), now))
	require.NoError(t, s.SaveLease(ctx, "elsewhere", other.ID, []byte(`{"pid":2}`), now))
	_, err := s.AddPodCommand(ctx, PodCommand{TaskID: mine.ID, InstanceID: "host:/srv/ipa", Command: "stop", Reason: "x", CreatedAt: now})
	require.NoError(t, err)

	require.NoError(t, s.AdoptInstance(ctx, "host:/srv/ipa", "host:1a2b3c"))

	owners, err := s.LeaseOwners(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]string{mine.ID: "host:1a2b3c", other.ID: "elsewhere"}, owners)
	cmds, err := s.PodCommands(ctx, "host:1a2b3c")
	require.NoError(t, err)
	require.Len(t, cmds, 1)
	require.Equal(t, mine.ID, cmds[0].TaskID)
	insts, err := s.ListInstances(ctx, now, time.Minute)
	require.NoError(t, err)
	for _, in := range insts {
		require.NotEqual(t, "host:/srv/ipa", in.ID, "the former instance row goes")
	}
	require.NoError(t, s.AdoptInstance(ctx, "host:/srv/ipa", "host:1a2b3c"), "adopting again changes nothing")
}
