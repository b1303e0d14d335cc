package store

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/pgtest"
)

// changeLog collects token changes heard by a watcher.
type changeLog struct {
	mu  sync.Mutex
	got []ipa.TokenChange
}

func (c *changeLog) add(ch ipa.TokenChange) {
	c.mu.Lock()
	c.got = append(c.got, ch)
	c.mu.Unlock()
}

func (c *changeLog) has(want ipa.TokenChange) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.got {
		if g == want {
			return true
		}
	}
	return false
}

// TestLocalDoor: the first token shuts the anonymous door for good, across
// reopening the database and after every token is revoked; only
// ReopenLocalDoor, with no active token, opens it again. Watchers hear every
// change, and on PostgreSQL so does another instance.
func TestLocalDoor(t *testing.T) {
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
			local := &changeLog{}
			s.WatchTokens(local.add)

			var remote *changeLog
			if backend == "postgres" {
				other := mustOpen(t, url)
				remote = &changeLog{}
				other.WatchTokens(remote.add)
				lctx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				listening := make(chan struct{}, 1)
				go func() {
					defer close(done)
					other.ListenCommits(lctx, func(CommitNotice) {}, func() {
						select {
						case listening <- struct{}{}:
						default:
						}
					})
				}()
				t.Cleanup(func() { cancel(); <-done })
				<-listening
			}

			door := func() bool {
				t.Helper()
				open, err := s.LocalDoorOpen(ctx)
				require.NoError(t, err)
				return open
			}
			require.True(t, door(), "a database that never held a token")

			tok := ipa.Token{ID: newID(), ActorID: "ada", Role: ipa.RoleAdmin, Hash: "h1", CreatedAt: t0}
			require.NoError(t, s.CreateToken(ctx, tok))
			require.True(t, local.has(ipa.TokenChange{Kind: ipa.TokenCreated, TokenID: tok.ID}))
			require.False(t, door())
			requireCode(t, s.ReopenLocalDoor(ctx), ipa.ECONFLICT, "")
			require.False(t, door())

			require.NoError(t, s.RevokeToken(ctx, tok.ID))
			require.True(t, local.has(ipa.TokenChange{Kind: ipa.TokenRevoked, TokenID: tok.ID}))
			require.False(t, door(), "revoking the last token keeps the door shut")
			require.False(t, must(mustOpen(t, url).LocalDoorOpen(ctx)), "also after reopening the database")

			// A database from before the setting existed: any token row at
			// all keeps the door shut.
			require.NoError(t, s.write.Exec(`DELETE FROM settings WHERE name = ?`, localDoorSetting).Error)
			require.False(t, door())

			require.NoError(t, s.ReopenLocalDoor(ctx))
			require.True(t, local.has(ipa.TokenChange{Kind: ipa.LocalDoorReopened}))
			require.True(t, door())
			require.True(t, must(mustOpen(t, url).LocalDoorOpen(ctx)))

			if remote != nil {
				deadline := time.Now().Add(5 * time.Second)
				for _, want := range []ipa.TokenChange{{Kind: ipa.TokenCreated, TokenID: tok.ID}, {Kind: ipa.TokenRevoked, TokenID: tok.ID}, {Kind: ipa.LocalDoorReopened}} {
					for !remote.has(want) {
						require.Truef(t, time.Now().Before(deadline), "the other instance never heard %+v", want)
						time.Sleep(20 * time.Millisecond)
					}
				}
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
