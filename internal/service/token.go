package service

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// TokenStore keeps API tokens.
type TokenStore interface {
	auth.Tokens
	ListTokens(ctx context.Context) ([]ipa.Token, error)
	RevokeToken(ctx context.Context, id string) error
}

// TokenService manages API tokens and tells callers who they are.
type TokenService struct {
	store TokenStore
	log   *slog.Logger
	now   func() time.Time
}

// NewTokenService returns a TokenService over st. log nil means
// slog.Default(); now nil means time.Now.
func NewTokenService(st TokenStore, log *slog.Logger, now func() time.Time) *TokenService {
	if log == nil {
		log = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	return &TokenService{store: st, log: log, now: func() time.Time { return now().UTC() }}
}

// Viewer returns the authenticated actor. Returns EUNAUTHENTICATED when none.
func (s *TokenService) Viewer(ctx context.Context) (ipa.Actor, error) {
	return ipa.RequireRole(ctx, ipa.RoleViewer)
}

// Tokens lists every API token, newest first, never their secrets. Requires
// ADMIN.
func (s *TokenService) Tokens(ctx context.Context) ([]ipa.Token, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleAdmin); err != nil {
		return nil, err
	}
	list, err := s.store.ListTokens(ctx)
	if err != nil {
		return nil, err
	}
	slices.Reverse(list)
	return list, nil
}

// CreateToken mints a token for the actor and role and returns it with its
// secret, which is shown only here. Requires ADMIN. Returns EINVALID for an
// empty actor or unknown role.
func (s *TokenService) CreateToken(ctx context.Context, actorID string, role ipa.Role) (ipa.Token, string, error) {
	admin, err := ipa.RequireRole(ctx, ipa.RoleAdmin)
	if err != nil {
		return ipa.Token{}, "", err
	}
	t, secret, err := auth.Mint(ctx, s.store, actorID, role, s.now())
	if err != nil {
		return ipa.Token{}, "", err
	}
	s.log.InfoContext(ctx, "token created", "token_id", t.ID, "for_actor", t.ActorID, "role", t.Role,
		"actor", admin.ID, "remote_addr", auth.RemoteAddr(ctx), "correlation_id", ipa.CorrelationID(ctx))
	return t, secret, nil
}

// RevokeToken revokes the token with this id and returns it. Requires ADMIN.
// Returns ENOTFOUND when there is no such token.
func (s *TokenService) RevokeToken(ctx context.Context, id string) (ipa.Token, error) {
	admin, err := ipa.RequireRole(ctx, ipa.RoleAdmin)
	if err != nil {
		return ipa.Token{}, err
	}
	list, err := s.store.ListTokens(ctx)
	if err != nil {
		return ipa.Token{}, err
	}
	i := slices.IndexFunc(list, func(t ipa.Token) bool { return t.ID == id })
	if i < 0 {
		return ipa.Token{}, ipa.Errorf(ipa.ENOTFOUND, "", "No token with id %q.", id)
	}
	if err := s.store.RevokeToken(ctx, id); err != nil {
		return ipa.Token{}, err
	}
	t := list[i]
	if t.RevokedAt == nil {
		now := s.now()
		t.RevokedAt = &now
	}
	s.log.InfoContext(ctx, "token revoked", "token_id", t.ID, "for_actor", t.ActorID, "actor", admin.ID,
		"remote_addr", auth.RemoteAddr(ctx), "correlation_id", ipa.CorrelationID(ctx))
	return t, nil
}
