package auth

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Credential is what a request authenticated with: a token, or nothing (the
// anonymous local door).
type Credential struct {
	TokenID string // "" for the anonymous local admin
}

// Anonymous reports whether the credential is the open local door.
func (c Credential) Anonymous() bool { return c.TokenID == "" }

// Session is a long-lived connection (a WebSocket or an SSE stream)
// authenticated once and bound to its credential: when the token is revoked,
// or the anonymous door shuts, the session is revoked and its context
// cancelled, on every instance.
type Session struct {
	a       *Authenticator
	cred    Credential
	header  string
	actor   ipa.Actor
	remote  string
	cancel  context.CancelFunc
	revoked atomic.Bool
	closed  atomic.Bool
}

// sweepEvery is how often open sessions' credentials are read again from the
// store. Notices close sessions at once; the sweep is the safety net for a
// notice lost while the LISTEN connection was down, and for revocations made
// by another process on SQLite (`ipa token revoke`), so it stays under the
// one second the contract allows.
const sweepEvery = 500 * time.Millisecond

// sessions is the registry of open sessions by credential.
type sessions struct {
	mu       sync.Mutex
	byKey    map[string]map[*Session]struct{} // token id, "" for anonymous
	n        int
	sweeping bool
}

// Open authenticates a long-lived connection from its Authorization value
// and registers it. The returned context is cancelled when the credential
// stops being valid; the caller must Close the session when the connection
// ends. Errors are those of Authenticate.
func (a *Authenticator) Open(ctx context.Context, authorization string) (context.Context, *Session, error) {
	actor, cred, err := a.authenticate(ctx, authorization)
	if err != nil {
		return ctx, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Session{a: a, cred: cred, header: authorization, actor: actor, remote: RemoteAddr(ctx), cancel: cancel}
	a.sessions.mu.Lock()
	if a.sessions.byKey == nil {
		a.sessions.byKey = make(map[string]map[*Session]struct{})
	}
	set := a.sessions.byKey[cred.TokenID]
	if set == nil {
		set = make(map[*Session]struct{})
		a.sessions.byKey[cred.TokenID] = set
	}
	set[s] = struct{}{}
	a.sessions.n++
	startSweep := !a.sessions.sweeping
	a.sessions.sweeping = true
	a.sessions.mu.Unlock()
	if startSweep {
		go a.sweepLoop()
	}
	// A revocation that committed between the authentication above and the
	// registration found nothing to close; the first sweep closes it.
	return ipa.WithActor(ctx, actor), s, nil
}

// Actor is who the session acts as.
func (s *Session) Actor() ipa.Actor { return s.actor }

// Credential is what the session authenticated with.
func (s *Session) Credential() Credential { return s.cred }

// Revoked reports whether the session's credential stopped being valid.
func (s *Session) Revoked() bool { return s.revoked.Load() }

// Check authenticates the session's credential again, for one more
// operation. Returns EUNAUTHENTICATED, and revokes the session, when the
// token was revoked or the anonymous door shut meanwhile; EUNAVAILABLE when
// the store is unreachable.
func (s *Session) Check(ctx context.Context) error {
	err := s.Verify(ctx)
	if ipa.ErrorCode(err) == ipa.EUNAUTHENTICATED {
		s.revoke()
	}
	return err
}

// Verify is Check without the revocation: a transport that must tell the
// client why its operation is refused before the connection closes calls
// Revoke itself once it has.
func (s *Session) Verify(ctx context.Context) error {
	if s.revoked.Load() {
		return errRevoked(s.cred)
	}
	_, cred, err := s.a.authenticate(ctx, s.header)
	if err == nil && cred != s.cred {
		err = errRevoked(s.cred)
	}
	if ipa.ErrorCode(err) == ipa.EUNAUTHENTICATED {
		return errRevoked(s.cred)
	}
	return err
}

// Revoke ends the session as a revocation does: its context is cancelled
// and Revoked reports true.
func (s *Session) Revoke() { s.revoke() }

func errRevoked(c Credential) error {
	if c.Anonymous() {
		return ipa.Errorf(ipa.EUNAUTHENTICATED, "", "Tokens are required now: reconnect with Authorization: Bearer <token>.")
	}
	return ipa.Errorf(ipa.EUNAUTHENTICATED, "", "The token is unknown or revoked.")
}

// Close unregisters the session; its context is cancelled. Calling it again
// does nothing.
func (s *Session) Close() {
	if s.closed.Swap(true) {
		return
	}
	s.cancel()
	reg := &s.a.sessions
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if set, ok := reg.byKey[s.cred.TokenID]; ok {
		if _, ok := set[s]; ok {
			delete(set, s)
			reg.n--
		}
		if len(set) == 0 {
			delete(reg.byKey, s.cred.TokenID)
		}
	}
}

func (s *Session) revoke() {
	if s.revoked.Swap(true) {
		return
	}
	s.cancel()
	s.a.log.Info("connection closed: credential no longer valid", "actor", s.actor.ID, "token_id", s.cred.TokenID,
		"remote_addr", s.remote)
}

// revokeKey revokes every open session of the token id ("" for anonymous).
func (a *Authenticator) revokeKey(key string) {
	a.sessions.mu.Lock()
	set := a.sessions.byKey[key]
	list := make([]*Session, 0, len(set))
	for s := range set {
		list = append(list, s)
	}
	a.sessions.mu.Unlock()
	for _, s := range list {
		s.revoke()
	}
}

// tokenChanged hears token changes from the store, local or from other
// instances.
func (a *Authenticator) tokenChanged(c ipa.TokenChange) {
	a.mu.Lock()
	a.doorGen++
	switch c.Kind {
	case ipa.TokenCreated:
		a.anyTokens, a.anyChecked = true, a.now()
	default:
		a.anyChecked = time.Time{} // read the door again
	}
	a.mu.Unlock()
	switch c.Kind {
	case ipa.TokenCreated:
		a.revokeKey("")
	case ipa.TokenRevoked:
		if c.TokenID != "" {
			a.revokeKey(c.TokenID)
		}
	}
}

// sweepLoop reads open sessions' credentials again every sweepEvery until no
// session is open.
func (a *Authenticator) sweepLoop() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for range t.C {
		a.sessions.mu.Lock()
		if a.sessions.n == 0 {
			a.sessions.sweeping = false
			a.sessions.mu.Unlock()
			return
		}
		keys := make([]string, 0, len(a.sessions.byKey))
		for k := range a.sessions.byKey {
			keys = append(keys, k)
		}
		a.sessions.mu.Unlock()
		a.sweep(keys)
	}
}

// sweep revokes the sessions among keys whose credential is no longer
// valid. A store error leaves them open: the per-operation check still
// guards them.
func (a *Authenticator) sweep(keys []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var tokens bool
	for _, k := range keys {
		if k == "" {
			if open, err := a.readDoor(ctx, true); err == nil && !open {
				a.revokeKey("")
			}
		} else {
			tokens = true
		}
	}
	if !tokens {
		return
	}
	list, err := a.tokens.ListTokens(ctx)
	if err != nil {
		return
	}
	active := make(map[string]bool, len(list))
	for _, t := range list {
		active[t.ID] = t.RevokedAt == nil
	}
	for _, k := range keys {
		if k != "" && !active[k] {
			a.revokeKey(k)
		}
	}
}

type remoteAddrKey struct{}

// WithRemoteAddr returns ctx carrying the client's address, for audit logs.
func WithRemoteAddr(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, remoteAddrKey{}, addr)
}

// RemoteAddr returns the client's address carried by ctx, or "".
func RemoteAddr(ctx context.Context) string {
	s, _ := ctx.Value(remoteAddrKey{}).(string)
	return s
}
