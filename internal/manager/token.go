package manager

import (
	"context"
	"slices"
	"strings"

	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// Tokens lists every API token, newest first, never their secrets. Requires
// ADMIN.
func (m *Manager) Tokens(ctx context.Context) ([]store.Token, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleAdmin); err != nil {
		return nil, err
	}
	list, err := m.store.ListTokens(ctx)
	if err != nil {
		return nil, err
	}
	slices.Reverse(list)
	return list, nil
}

// CreateToken mints a token for the actor and role and returns it with its
// secret, which is shown only here. Requires ADMIN. Returns EINVALID for an
// empty actor or unknown role.
func (m *Manager) CreateToken(ctx context.Context, actorID string, role ipa.Role) (store.Token, string, error) {
	admin, err := ipa.RequireRole(ctx, ipa.RoleAdmin)
	if err != nil {
		return store.Token{}, "", err
	}
	if strings.ContainsRune(actorID, 0) {
		return store.Token{}, "", invalidArg("actorId must not contain NUL characters.")
	}
	t, secret, err := auth.Mint(ctx, m.store, actorID, role, m.now())
	if err != nil {
		return store.Token{}, "", err
	}
	m.log.InfoContext(ctx, "token created", "token_id", t.ID, "for_actor", t.ActorID, "role", t.Role,
		"actor", admin.ID, "remote_addr", auth.RemoteAddr(ctx), "correlation_id", ipa.CorrelationID(ctx))
	return t, secret, nil
}

// RevokeToken revokes the token with this id and returns it. Requires ADMIN.
// Returns ENOTFOUND when there is no such token.
func (m *Manager) RevokeToken(ctx context.Context, id string) (store.Token, error) {
	admin, err := ipa.RequireRole(ctx, ipa.RoleAdmin)
	if err != nil {
		return store.Token{}, err
	}
	list, err := m.store.ListTokens(ctx)
	if err != nil {
		return store.Token{}, err
	}
	i := slices.IndexFunc(list, func(t store.Token) bool { return t.ID == id })
	if i < 0 {
		return store.Token{}, ipa.Errorf(ipa.ENOTFOUND, "", "No token with id %q.", id)
	}
	if err := m.store.RevokeToken(ctx, id); err != nil {
		return store.Token{}, err
	}
	t := list[i]
	if t.RevokedAt == nil {
		now := m.now()
		t.RevokedAt = &now
	}
	m.log.InfoContext(ctx, "token revoked", "token_id", t.ID, "for_actor", t.ActorID, "actor", admin.ID,
		"remote_addr", auth.RemoteAddr(ctx), "correlation_id", ipa.CorrelationID(ctx))
	return t, nil
}
