// Package auth mints API tokens and turns an Authorization header into an
// authenticated actor. Tokens are random secrets shown once; only their
// SHA-256 hash is stored. High-entropy secrets need no slow hash: a stolen
// hash cannot be reversed and cannot be guessed.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Mode is how strictly requests must carry a token.
type Mode string

const (
	// ModeAuto requires tokens, except on a loopback-only server with no
	// token yet: there every request acts as the local admin.
	ModeAuto Mode = "auto"
	// ModeRequired always requires a token.
	ModeRequired Mode = "required"
)

// ParseMode returns the mode named s. Returns an error for anything else.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeAuto, ModeRequired:
		return Mode(s), nil
	}
	return "", fmt.Errorf("auth mode must be auto or required, not %q", s)
}

// LocalActor is who acts on a loopback server that has no tokens yet.
var LocalActor = ipa.Actor{ID: "local", Role: ipa.RoleAdmin}

// tokenPrefix marks ipa tokens so secret scanners and people recognise them.
const tokenPrefix = "ipa_"

// Tokens is the token storage auth needs.
type Tokens interface {
	CreateToken(ctx context.Context, t ipa.Token) error
	TokenByHash(ctx context.Context, hash string) (*ipa.Token, error)
	CountActiveTokens(ctx context.Context) (int64, error)
	TouchToken(ctx context.Context, id string, at time.Time) error
	ListTokens(ctx context.Context) ([]ipa.Token, error)
	LocalDoorOpen(ctx context.Context) (bool, error)
	WatchTokens(fn func(ipa.TokenChange))
}

// Hash returns the stored form of a token secret.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Mint creates and stores a token for the actor and role and returns the
// secret, which is never stored. Returns EINVALID for an empty actor or an
// unknown role, and EINVALID/INVALID_TEXT for an actor id that is not UTF-8
// or holds a control character.
func Mint(ctx context.Context, tokens Tokens, actorID string, role ipa.Role, now time.Time) (ipa.Token, string, error) {
	// The actor id is written on every event the token causes and shown
	// in logs and consoles: one line of printable text.
	actorID = strings.TrimSpace(actorID)
	if err := ipa.CheckLine("The actor id", actorID); err != nil {
		return ipa.Token{}, "", err
	}
	if actorID == "" || len(actorID) > 255 {
		return ipa.Token{}, "", ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "The actor id must be 1 to 255 characters.")
	}
	if !role.Valid() {
		return ipa.Token{}, "", ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Unknown role %q.", role)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return ipa.Token{}, "", err
	}
	secret := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	id, err := uuid.NewV7()
	if err != nil {
		return ipa.Token{}, "", err
	}
	t := ipa.Token{ID: id.String(), ActorID: actorID, Role: role, Hash: Hash(secret), CreatedAt: now.UTC()}
	if err := tokens.CreateToken(ctx, t); err != nil {
		return ipa.Token{}, "", err
	}
	return t, secret, nil
}

// Authenticator resolves request credentials to actors.
type Authenticator struct {
	tokens   Tokens
	mode     Mode
	loopback bool
	now      func() time.Time
	log      *slog.Logger // audit: failed authentications, revoked sessions

	mu          sync.Mutex
	anyChecked  time.Time // when the door was last read
	anyTokens   bool      // the door is shut
	doorGen     uint64    // bumped by every token change, so a read that raced one is not cached
	lastTouched map[string]time.Time

	sessions sessions  // open WebSocket connections and SSE streams, by credential
	failLog  *logLimit // failed authentications logged, at most this often
}

// Option tunes New.
type Option func(*Authenticator)

// WithLogger makes the authenticator write its audit records to log.
func WithLogger(log *slog.Logger) Option { return func(a *Authenticator) { a.log = log } }

// anyTokensTTL is how long "no token exists" is trusted before it is read
// again; minting the first token locks the open door within this time.
const anyTokensTTL = time.Second

// touchEvery limits last-used writes to one per token per interval.
const touchEvery = time.Minute

// New returns an authenticator. loopback says whether the server listens on
// loopback addresses only.
func New(tokens Tokens, mode Mode, loopback bool, opts ...Option) *Authenticator {
	a := &Authenticator{tokens: tokens, mode: mode, loopback: loopback, now: time.Now, lastTouched: make(map[string]time.Time),
		log: slog.New(slog.DiscardHandler), failLog: newLogLimit()}
	for _, o := range opts {
		o(a)
	}
	tokens.WatchTokens(a.tokenChanged)
	return a
}

// Authenticate returns the actor for an Authorization header value ("" when
// absent). Returns EUNAUTHENTICATED for a missing token where one is needed
// and for a bad, unknown or revoked token; EUNAVAILABLE when the store is
// unreachable.
func (a *Authenticator) Authenticate(ctx context.Context, authorization string) (ipa.Actor, error) {
	actor, _, err := a.authenticate(ctx, authorization)
	return actor, err
}

// authenticate is Authenticate, also returning the credential used. Every
// refusal is logged for audit, with the client's address (RemoteAddr) and,
// for a known but revoked token, its id and actor; never the secret.
func (a *Authenticator) authenticate(ctx context.Context, authorization string) (ipa.Actor, Credential, error) {
	actor, cred, err := a.verify(ctx, authorization)
	if ipa.ErrorCode(err) == ipa.EUNAUTHENTICATED {
		if ok, suppressed := a.failLog.allow(); ok {
			var e *ipa.Error
			errors.As(err, &e)
			attrs := []any{"actor", actor.ID, "token_id", cred.TokenID,
				"remote_addr", RemoteAddr(ctx), "reason", e.Message, "correlation_id", ipa.CorrelationID(ctx)}
			if suppressed > 0 {
				attrs = append(attrs, "suppressed", suppressed)
			}
			a.log.WarnContext(ctx, "authentication failed", attrs...)
		}
		return ipa.Actor{}, Credential{}, err
	}
	return actor, cred, err
}

// verify checks the credential. On a revoked token it returns the token's
// actor and id with the error, for the audit log only.
func (a *Authenticator) verify(ctx context.Context, authorization string) (ipa.Actor, Credential, error) {
	authorization = strings.TrimSpace(authorization)
	if authorization == "" {
		open, err := a.openDoor(ctx)
		if err != nil {
			return ipa.Actor{}, Credential{}, err
		}
		if open {
			if !peerIsServerUser(ctx) {
				return ipa.Actor{}, Credential{}, ipa.Errorf(ipa.EUNAUTHENTICATED, "", "%s", errNotServerUser)
			}
			return LocalActor, Credential{}, nil
		}
		return ipa.Actor{}, Credential{}, ipa.Errorf(ipa.EUNAUTHENTICATED, "", "Authentication required: send Authorization: Bearer <token>.")
	}
	scheme, secret, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return ipa.Actor{}, Credential{}, ipa.Errorf(ipa.EUNAUTHENTICATED, "", "The Authorization header must be \"Bearer <token>\".")
	}
	t, err := a.tokens.TokenByHash(ctx, Hash(strings.TrimSpace(secret)))
	if err != nil {
		return ipa.Actor{}, Credential{}, err
	}
	if t == nil {
		return ipa.Actor{}, Credential{}, ipa.Errorf(ipa.EUNAUTHENTICATED, "", "The token is unknown or revoked.")
	}
	if t.RevokedAt != nil {
		return ipa.Actor{ID: t.ActorID, Role: t.Role}, Credential{TokenID: t.ID},
			ipa.Errorf(ipa.EUNAUTHENTICATED, "", "The token is unknown or revoked.")
	}
	a.touch(ctx, t.ID)
	return ipa.Actor{ID: t.ActorID, Role: t.Role}, Credential{TokenID: t.ID}, nil
}

// errNotServerUser is the refusal of a request without a token, while no
// token exists, from a connection not owned by the server's OS user (or
// whose owner cannot be told): it says how to get a token.
const errNotServerUser = "Authentication required: without a token this server admits only its own OS user. " +
	"Create a token as that user (`ipa token create --actor NAME --role admin`, with the server's --database) " +
	"and send Authorization: Bearer <token>."

// LocalDoorOpen reports whether the anonymous local door is open now (no
// token has ever existed, auto mode, loopback): a request without a token
// from the server's own OS user acts as the local admin. Returns
// EUNAVAILABLE when the store is unreachable.
func (a *Authenticator) LocalDoorOpen(ctx context.Context) (bool, error) { return a.openDoor(ctx) }

// openDoor reports whether a request without a token acts as the local admin.
func (a *Authenticator) openDoor(ctx context.Context) (bool, error) {
	return a.readDoor(ctx, false)
}

// readDoor is openDoor; fresh skips the cache.
func (a *Authenticator) readDoor(ctx context.Context, fresh bool) (bool, error) {
	if a.mode != ModeAuto || !a.loopback {
		return false, nil
	}
	a.mu.Lock()
	now, gen := a.now(), a.doorGen
	if !fresh && now.Sub(a.anyChecked) <= anyTokensTTL {
		defer a.mu.Unlock()
		return !a.anyTokens, nil
	}
	a.mu.Unlock()
	open, err := a.tokens.LocalDoorOpen(ctx)
	if err != nil {
		return false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.doorGen != gen {
		// A token change landed while reading: trust what it set, when
		// it shut the door.
		return open && !a.anyTokens, nil
	}
	a.anyTokens, a.anyChecked = !open, now
	return open, nil
}

// touch records that a token was used, at most once per touchEvery.
func (a *Authenticator) touch(ctx context.Context, id string) {
	now := a.now()
	a.mu.Lock()
	last, ok := a.lastTouched[id]
	due := !ok || now.Sub(last) > touchEvery
	if due {
		a.lastTouched[id] = now
	}
	a.mu.Unlock()
	if due {
		_ = a.tokens.TouchToken(context.WithoutCancel(ctx), id, now)
	}
}

// ErrNotLoopbackWithoutTokens is returned by CheckListen.
var ErrNotLoopbackWithoutTokens = errors.New("refusing to listen on a non-loopback address with no API token: create one with `ipa token create --actor ID --role admin` first")

// CheckListen refuses a server that would listen beyond loopback with no
// token configured: it would be open to anyone (in auto mode) or useless (in
// required mode).
func CheckListen(ctx context.Context, tokens Tokens, loopback bool) error {
	if loopback {
		return nil
	}
	n, err := tokens.CountActiveTokens(ctx)
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotLoopbackWithoutTokens
	}
	return nil
}
