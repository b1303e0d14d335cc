package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

type tokenRow struct {
	ID         string `gorm:"column:id;primaryKey"`
	ActorID    string `gorm:"column:actor_id"`
	Role       string `gorm:"column:role"`
	Hash       string `gorm:"column:hash"`
	CreatedAt  int64  `gorm:"column:created_at"`
	RevokedAt  *int64 `gorm:"column:revoked_at"`
	LastUsedAt *int64 `gorm:"column:last_used_at"`
}

func (tokenRow) TableName() string { return "api_tokens" }

func (r tokenRow) token() ipa.Token {
	return ipa.Token{
		ID: r.ID, ActorID: r.ActorID, Role: ipa.Role(r.Role), Hash: r.Hash,
		CreatedAt: fromNanos(r.CreatedAt), RevokedAt: optTime(r.RevokedAt), LastUsed: optTime(r.LastUsedAt),
	}
}

func optTime(n *int64) *time.Time {
	if n == nil {
		return nil
	}
	t := fromNanos(*n)
	return &t
}

func optNanos(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	n := nanos(*t)
	return &n
}

// CreateToken stores t and shuts the anonymous local door for good (see
// LocalDoorOpen). Returns a plain error when its id or hash exists,
// EUNAVAILABLE when the database is unreachable.
func (s *Store) CreateToken(ctx context.Context, t ipa.Token) error {
	r := tokenRow{
		ID: t.ID, ActorID: t.ActorID, Role: string(t.Role), Hash: t.Hash, CreatedAt: nanos(t.CreatedAt),
		RevokedAt: optNanos(t.RevokedAt), LastUsedAt: optNanos(t.LastUsed),
	}
	if err := s.createToken(ctx, r); err != nil {
		return s.wrap(fmt.Errorf("store: create token: %w", err))
	}
	return nil
}

// TokenByHash returns the token with the given hash, revoked or not, or nil
// and no error when there is none. Returns EUNAVAILABLE when the database is
// unreachable.
func (s *Store) TokenByHash(ctx context.Context, hash string) (*ipa.Token, error) {
	var rows []tokenRow
	if err := s.read.WithContext(ctx).Where("hash = ?", hash).Limit(1).Find(&rows).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: token by hash: %w", err))
	}
	if len(rows) == 0 {
		return nil, nil
	}
	t := rows[0].token()
	return &t, nil
}

// ListTokens returns every token, revoked ones included, oldest first.
// Returns EUNAVAILABLE when the database is unreachable.
func (s *Store) ListTokens(ctx context.Context) ([]ipa.Token, error) {
	var rows []tokenRow
	if err := s.read.WithContext(ctx).Order("created_at, id").Find(&rows).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: list tokens: %w", err))
	}
	out := make([]ipa.Token, len(rows))
	for i, r := range rows {
		out[i] = r.token()
	}
	return out, nil
}

// RevokeToken revokes the token whose id is idOrPrefix, or else the one token
// whose id starts with it; revoking a revoked token changes nothing. Token
// watchers hear of it (see WatchTokens). Returns
// ENOTFOUND when no token matches, EINVALID when a prefix matches several,
// EUNAVAILABLE when the database is unreachable.
func (s *Store) RevokeToken(ctx context.Context, idOrPrefix string) error {
	if idOrPrefix == "" {
		return ipa.Errorf(ipa.ENOTFOUND, "", "No token matches %q.", idOrPrefix)
	}
	var ids []string
	err := s.read.WithContext(ctx).Model(&tokenRow{}).
		Where("id = ? OR id LIKE ? ESCAPE '\\'", idOrPrefix, escapeLike(idOrPrefix)+"%").
		Order("id").Limit(3).Pluck("id", &ids).Error
	if err != nil {
		return s.wrap(fmt.Errorf("store: revoke token: %w", err))
	}
	id := ""
	for _, x := range ids {
		if x == idOrPrefix {
			id = x
		}
	}
	switch {
	case id != "":
	case len(ids) == 0:
		return ipa.Errorf(ipa.ENOTFOUND, "", "No token matches %q.", idOrPrefix)
	case len(ids) > 1:
		return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "%q matches several tokens; give more of the id.", idOrPrefix)
	default:
		id = ids[0]
	}
	if err := s.revokeToken(ctx, id); err != nil {
		return s.wrap(fmt.Errorf("store: revoke token: %w", err))
	}
	return nil
}

// escapeLike escapes LIKE's wildcards (and the escape character) in s.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// CountActiveTokens returns how many tokens are not revoked. Returns
// EUNAVAILABLE when the database is unreachable.
func (s *Store) CountActiveTokens(ctx context.Context) (int64, error) {
	var n int64
	if err := s.read.WithContext(ctx).Model(&tokenRow{}).Where("revoked_at IS NULL").Count(&n).Error; err != nil {
		return 0, s.wrap(fmt.Errorf("store: count tokens: %w", err))
	}
	return n, nil
}

// TouchToken records that the token was used at at. An unknown id changes
// nothing. Returns EUNAVAILABLE when the database is unreachable.
func (s *Store) TouchToken(ctx context.Context, id string, at time.Time) error {
	err := s.write.WithContext(ctx).Exec(`UPDATE api_tokens SET last_used_at = ? WHERE id = ?`, nanos(at), id).Error
	if err != nil {
		return s.wrap(fmt.Errorf("store: touch token: %w", err))
	}
	return nil
}

// Secret returns the named server secret of size bytes, creating it from
// crypto/rand on first use. Concurrent callers, in this process or another,
// all get the one value that was stored first. Returns EUNAVAILABLE when the
// database is unreachable, a plain error when the stored value is not size
// bytes.
func (s *Store) Secret(ctx context.Context, name string, size int) ([]byte, error) {
	fresh := make([]byte, size)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	err := s.write.WithContext(ctx).Exec(`INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`,
		name, hex.EncodeToString(fresh)).Error
	if err != nil {
		return nil, s.wrap(fmt.Errorf("store: secret: %w", err))
	}
	var vals []string
	if err := s.write.WithContext(ctx).Raw(`SELECT value FROM settings WHERE name = ?`, name).Scan(&vals).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: secret: %w", err))
	}
	if len(vals) == 0 {
		return nil, fmt.Errorf("store: secret %q vanished", name)
	}
	b, err := hex.DecodeString(vals[0])
	if err != nil || len(b) != size {
		return nil, fmt.Errorf("store: secret %q is not %d bytes", name, size)
	}
	return b, nil
}
