package auth

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// Token and role rules against a real SQLite file: minting, hashing,
// authenticating, revocation, the anonymous local door and its cache, the
// last-used throttle, role ordering.

const waitFor = time.Minute // generous: the machine is shared

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "ipa.db"), store.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

// clock is a settable now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func withClock(c *clock) Option { return func(a *Authenticator) { a.now = c.now } }

// asServerUser is a request context whose connection belongs to the
// server's own OS user, as ConnContext would find it.
func asServerUser(ctx context.Context) context.Context {
	return context.WithValue(ctx, connPeerKey{}, &connPeer{lookup: func() (int, bool) { return serverUID, true }})
}

func requireUnauthenticated(t *testing.T, err error, msgAndArgs ...any) {
	t.Helper()
	require.Equal(t, ipa.EUNAUTHENTICATED, ipa.ErrorCode(err), msgAndArgs...)
}

func TestHash(t *testing.T) {
	require.Equal(t, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", Hash("abc"), "hex SHA-256")
	require.NotEqual(t, Hash("ipa_a"), Hash("ipa_b"))
}

// A minted token is shown once: the store keeps its hash, never the secret,
// and the secret authenticates as the token's actor and role.
func TestMintAndAuthenticate(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	tok, secret, err := Mint(ctx, st, "  ann  ", ipa.RoleOperator, now)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(secret, tokenPrefix))
	require.GreaterOrEqual(t, len(secret), len(tokenPrefix)+43, "32 random bytes")
	require.Equal(t, "ann", tok.ActorID, "the actor id is trimmed")
	require.Equal(t, Hash(secret), tok.Hash)
	require.Equal(t, now.UTC(), tok.CreatedAt)

	list, err := st.ListTokens(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, Hash(secret), list[0].Hash)
	require.NotContains(t, list[0].Hash, secret)

	_, secret2, err := Mint(ctx, st, "ann", ipa.RoleOperator, now)
	require.NoError(t, err)
	require.NotEqual(t, secret, secret2, "every secret is new")

	a := New(st, ModeRequired, true)
	for _, header := range []string{"Bearer " + secret, "bearer " + secret, "  Bearer   " + secret + "  "} {
		actor, err := a.Authenticate(ctx, header)
		require.NoError(t, err, header)
		require.Equal(t, ipa.Actor{ID: "ann", Role: ipa.RoleOperator}, actor)
	}
}

// Mint refuses what would be an unreadable or meaningless token, and
// stores nothing.
func TestMintRefusals(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	for name, c := range map[string]struct {
		actor string
		role  ipa.Role
	}{
		"no actor":          {"", ipa.RoleViewer},
		"blank actor":       {"   ", ipa.RoleViewer},
		"actor of 256":      {strings.Repeat("a", 256), ipa.RoleViewer},
		"a control char":    {"ann\x07", ipa.RoleViewer},
		"a newline":         {"ann\nroot", ipa.RoleViewer},
		"not UTF-8":         {"ann\xff", ipa.RoleViewer},
		"unknown role":      {"ann", "ROOT"},
		"no role":           {"ann", ""},
		"lower-case a role": {"ann", "admin"},
	} {
		_, _, err := Mint(ctx, st, c.actor, c.role, time.Now())
		require.Equal(t, ipa.EINVALID, ipa.ErrorCode(err), name)
	}
	_, _, err := Mint(ctx, st, strings.Repeat("a", 255), ipa.RoleViewer, time.Now())
	require.NoError(t, err, "255 characters is allowed")
	n, err := st.CountActiveTokens(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}

// Everything but "Bearer <a live token>" is refused as unauthenticated.
func TestAuthenticateRefusals(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	_, secret, err := Mint(ctx, st, "ann", ipa.RoleAdmin, time.Now())
	require.NoError(t, err)
	a := New(st, ModeAuto, true)
	for _, header := range []string{
		"",                       // tokens exist: the door is shut
		"Basic " + secret,        // another scheme
		"Bearer",                 // no secret
		"Bearer    ",             // a blank secret
		secret,                   // no scheme
		"Bearer " + secret + "x", // unknown
		"Bearer ipa_" + strings.Repeat("A", 43),
	} {
		_, err := a.Authenticate(ctx, header)
		requireUnauthenticated(t, err, "%q", header)
	}
}

// blindSweep is the store whose token list and door cannot be read once
// blind is set: the sweep that re-reads open sessions' credentials then
// closes nothing, so only a change notice can.
type blindSweep struct {
	*store.Store
	blind atomic.Bool
}

func (s *blindSweep) ListTokens(ctx context.Context) ([]ipa.Token, error) {
	if s.blind.Load() {
		return nil, ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonStoreUnavailable, "blind")
	}
	return s.Store.ListTokens(ctx)
}

func (s *blindSweep) LocalDoorOpen(ctx context.Context) (bool, error) {
	if s.blind.Load() {
		return false, ipa.Errorf(ipa.EUNAVAILABLE, ipa.ReasonStoreUnavailable, "blind")
	}
	return s.Store.LocalDoorOpen(ctx)
}

// Revoking a token refuses it at once and ends the connections open with it
// (and only those), through the store's change notice.
func TestRevocationEndsSessions(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	revoked, s1, err := Mint(ctx, st, "ann", ipa.RoleOperator, time.Now())
	require.NoError(t, err)
	_, s2, err := Mint(ctx, st, "bob", ipa.RoleOperator, time.Now())
	require.NoError(t, err)
	tokens := &blindSweep{Store: st}
	a := New(tokens, ModeRequired, false)

	c1, sess1, err := a.Open(ctx, "Bearer "+s1)
	require.NoError(t, err)
	defer sess1.Close()
	actor, ok := ipa.ActorFrom(c1)
	require.True(t, ok)
	require.Equal(t, "ann", actor.ID)
	c2, sess2, err := a.Open(ctx, "Bearer "+s2)
	require.NoError(t, err)
	defer sess2.Close()

	tokens.blind.Store(true)
	require.NoError(t, st.RevokeToken(ctx, revoked.ID))
	select {
	case <-c1.Done():
	case <-time.After(waitFor):
		t.Fatal("the revoked token's session stayed open")
	}
	require.True(t, sess1.Revoked())
	tokens.blind.Store(false)
	requireUnauthenticated(t, sess1.Check(ctx))
	_, err = a.Authenticate(ctx, "Bearer "+s1)
	requireUnauthenticated(t, err)

	require.NoError(t, c2.Err(), "another token's session is untouched")
	require.False(t, sess2.Revoked())
	require.NoError(t, sess2.Check(ctx))

	sess2.Close()
	sess2.Close() // twice is once
	require.Error(t, c2.Err(), "closing a session cancels its context")
}

// A revocation this instance hears no notice of (another process on
// SQLite, a notice lost) still ends the token's sessions: the sweep reads
// open sessions' credentials again.
func TestRevocationWithoutNoticeEndsSessionsBySweep(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	tok, secret, err := Mint(ctx, st, "ann", ipa.RoleOperator, time.Now())
	require.NoError(t, err)
	a := New(quietTokens{st}, ModeRequired, false)
	sctx, sess, err := a.Open(ctx, "Bearer "+secret)
	require.NoError(t, err)
	defer sess.Close()
	require.NoError(t, st.RevokeToken(ctx, tok.ID))
	select {
	case <-sctx.Done():
	case <-time.After(waitFor):
		t.Fatal("the sweep did not end the revoked token's session")
	}
	require.True(t, sess.Revoked())
}

// Likewise the anonymous sessions when a token is created elsewhere: the
// sweep reads the door again and ends them.
func TestDoorShutWithoutNoticeEndsAnonymousSessionsBySweep(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	a := New(quietTokens{st}, ModeAuto, true)
	sctx, sess, err := a.Open(asServerUser(ctx), "")
	require.NoError(t, err)
	defer sess.Close()
	_, _, err = Mint(ctx, st, "ann", ipa.RoleAdmin, time.Now())
	require.NoError(t, err)
	select {
	case <-sctx.Done():
	case <-time.After(waitFor):
		t.Fatal("the sweep did not end the anonymous session")
	}
	require.True(t, sess.Revoked())
}

// quietTokens is the store without its change notices: another process's
// writes on SQLite, or a notice lost while PostgreSQL's LISTEN was down.
type quietTokens struct{ *store.Store }

func (quietTokens) WatchTokens(func(ipa.TokenChange)) {}

// The anonymous local door: open only in auto mode, on loopback, while no
// token exists, and only to the server's own OS user; minting a token shuts
// it at once and ends the anonymous sessions.
func TestLocalDoor(t *testing.T) {
	ctx := context.Background()
	local := asServerUser(ctx)

	st := openStore(t)
	for _, c := range []struct {
		mode     Mode
		loopback bool
	}{{ModeRequired, true}, {ModeAuto, false}} {
		a := New(st, c.mode, c.loopback)
		_, err := a.Authenticate(local, "")
		requireUnauthenticated(t, err, "%s loopback=%v", c.mode, c.loopback)
	}

	tokens := &blindSweep{Store: st}
	a := New(tokens, ModeAuto, true)
	actor, err := a.Authenticate(local, "")
	require.NoError(t, err)
	require.Equal(t, LocalActor, actor)
	_, err = a.Authenticate(ctx, "")
	requireUnauthenticated(t, err, "a connection whose owner cannot be told")
	require.Contains(t, err.Error(), "ipa token create")

	anon, sess, err := a.Open(local, "")
	require.NoError(t, err)
	defer sess.Close()
	require.True(t, sess.Credential().Anonymous())

	tokens.blind.Store(true) // only the notice of the new token can end it
	_, _, err = Mint(ctx, st, "ann", ipa.RoleAdmin, time.Now())
	require.NoError(t, err)
	_, err = a.Authenticate(local, "")
	requireUnauthenticated(t, err, "the first token shuts the door at once")
	select {
	case <-anon.Done():
	case <-time.After(waitFor):
		t.Fatal("an anonymous session outlived the door")
	}
	tokens.blind.Store(false)
	require.Contains(t, sess.Check(ctx).Error(), "Tokens are required now")
}

// Without a notice, "no token exists" is trusted for anyTokensTTL, then read
// again; a token's last use is written at most once per touchEvery.
func TestDoorCacheAndTouchExpire(t *testing.T) {
	ctx := context.Background()
	local := asServerUser(ctx)
	st := openStore(t)
	clk := &clock{t: time.Now()}
	a := New(quietTokens{st}, ModeAuto, true, withClock(clk))

	_, err := a.Authenticate(local, "")
	require.NoError(t, err)
	tok, secret, err := Mint(ctx, st, "ann", ipa.RoleViewer, time.Now())
	require.NoError(t, err)
	_, err = a.Authenticate(local, "")
	require.NoError(t, err, "within the TTL the cached answer stands")
	clk.add(anyTokensTTL + time.Millisecond)
	_, err = a.Authenticate(local, "")
	requireUnauthenticated(t, err, "past the TTL the door is read again")

	lastUsed := func() *time.Time {
		list, err := st.ListTokens(ctx)
		require.NoError(t, err)
		for _, x := range list {
			if x.ID == tok.ID {
				return x.LastUsed
			}
		}
		t.Fatal("token gone")
		return nil
	}
	require.Nil(t, lastUsed())
	_, err = a.Authenticate(ctx, "Bearer "+secret)
	require.NoError(t, err)
	first := lastUsed()
	require.NotNil(t, first)
	require.WithinDuration(t, clk.now(), *first, time.Millisecond)

	clk.add(touchEvery / 2)
	_, err = a.Authenticate(ctx, "Bearer "+secret)
	require.NoError(t, err)
	require.Equal(t, first, lastUsed(), "not written again within touchEvery")
	clk.add(touchEvery)
	_, err = a.Authenticate(ctx, "Bearer "+secret)
	require.NoError(t, err)
	require.True(t, lastUsed().After(*first), "written again after touchEvery")
}

// Roles are ordered VIEWER < OPERATOR < ADMIN; each includes the ones below;
// an unknown role allows nothing. RequireRole turns that into the API's
// refusals: no actor is UNAUTHENTICATED, too small a role FORBIDDEN.
func TestRoleOrderingAndRequireRole(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	a := New(st, ModeRequired, true)
	roles := []ipa.Role{ipa.RoleViewer, ipa.RoleOperator, ipa.RoleAdmin}
	for i, have := range roles {
		_, secret, err := Mint(ctx, st, "someone", have, time.Now())
		require.NoError(t, err)
		actor, err := a.Authenticate(ctx, "Bearer "+secret)
		require.NoError(t, err)
		actx := ipa.WithActor(ctx, actor)
		for j, need := range roles {
			got, err := ipa.RequireRole(actx, need)
			if i >= j {
				require.NoError(t, err, "%s needs %s", have, need)
				require.Equal(t, actor, got)
			} else {
				require.Equal(t, ipa.EFORBIDDEN, ipa.ErrorCode(err), "%s needs %s", have, need)
			}
		}
		require.False(t, have.Allows(""), "an unknown need is never met")
		require.False(t, have.Allows("ROOT"))
	}
	require.False(t, ipa.Role("ROOT").Allows(ipa.RoleViewer))
	_, err := ipa.RequireRole(ctx, ipa.RoleViewer)
	requireUnauthenticated(t, err)
	_, err = ipa.RequireRole(ipa.WithActor(ctx, ipa.Actor{ID: "x", Role: "ROOT"}), ipa.RoleViewer)
	require.Equal(t, ipa.EFORBIDDEN, ipa.ErrorCode(err))
}

// A server beyond loopback needs an active token first; a revoked one does
// not count.
func TestCheckListen(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	require.NoError(t, CheckListen(ctx, st, true))
	require.ErrorIs(t, CheckListen(ctx, st, false), ErrNotLoopbackWithoutTokens)
	tok, _, err := Mint(ctx, st, "ann", ipa.RoleAdmin, time.Now())
	require.NoError(t, err)
	require.NoError(t, CheckListen(ctx, st, false))
	require.NoError(t, st.RevokeToken(ctx, tok.ID))
	require.ErrorIs(t, CheckListen(ctx, st, false), ErrNotLoopbackWithoutTokens)
}

func TestParseMode(t *testing.T) {
	for _, s := range []string{"auto", "required"} {
		m, err := ParseMode(s)
		require.NoError(t, err)
		require.Equal(t, Mode(s), m)
	}
	for _, s := range []string{"", "AUTO", "off", "none"} {
		_, err := ParseMode(s)
		require.Error(t, err, s)
	}
}
