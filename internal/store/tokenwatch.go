package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// tokenChannel is the PostgreSQL NOTIFY channel on which token changes are
// announced, so every instance closes a revoked token's connections and
// shuts its anonymous door at once. It shares the LISTEN connection of the
// commit notices.
const tokenChannel = "ipa_tokens"

// localDoorSetting is the settings row recording whether the anonymous
// local door may open. "closed" is written with the first token and stays
// until an administrator reopens it ("open"); without the row, the door is
// open only on a database that has never held a token.
const localDoorSetting = "auth.local_door"

// tokenWatchers are the functions told of token changes; one set per Store.
type tokenWatchers struct {
	mu  sync.Mutex
	fns []func(ipa.TokenChange)
}

// WatchTokens makes fn hear every token change committed through this Store
// (after the commit) and, on PostgreSQL, those of other instances on the
// same database while ListenCommits runs. A notice can be lost while the
// LISTEN connection is down, so watchers must also re-read the tokens now
// and then. fn must not block.
func (s *Store) WatchTokens(fn func(ipa.TokenChange)) {
	s.tokenWatch.mu.Lock()
	s.tokenWatch.fns = append(s.tokenWatch.fns, fn)
	s.tokenWatch.mu.Unlock()
}

func (s *Store) tokenChanged(c ipa.TokenChange) {
	s.tokenWatch.mu.Lock()
	fns := slices.Clone(s.tokenWatch.fns)
	s.tokenWatch.mu.Unlock()
	for _, fn := range fns {
		fn(c)
	}
}

// notifyToken queues, inside tx, the notice of c for other instances;
// PostgreSQL delivers it only if tx commits.
func (s *Store) notifyToken(tx *gorm.DB, c ipa.TokenChange) error {
	if !s.postgres() {
		return nil
	}
	return tx.Exec(`SELECT pg_notify(?, ?)`, tokenChannel, s.instance+"|"+string(c.Kind)+"|"+c.TokenID).Error
}

// heardToken handles a token notice; it reports whether the payload was one.
func (s *Store) heardToken(channel, payload string) bool {
	if channel != tokenChannel {
		return false
	}
	parts := strings.Split(payload, "|")
	if len(parts) != 3 {
		s.log.Warn("token notices: ignored a malformed notice")
		return true
	}
	if parts[0] != s.instance {
		s.tokenChanged(ipa.TokenChange{Kind: ipa.TokenChangeKind(parts[1]), TokenID: parts[2]})
	}
	return true
}

// setLocalDoor writes the anonymous door setting inside tx.
func setLocalDoor(tx *gorm.DB, value string) error {
	return tx.Exec(`INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value`,
		localDoorSetting, value).Error
}

// LocalDoorOpen reports whether requests without a token may act as the
// local admin as far as the database is concerned: no token is active, and
// either no token has ever existed or an administrator reopened the door
// since. Returns EUNAVAILABLE when the database is unreachable.
func (s *Store) LocalDoorOpen(ctx context.Context) (bool, error) {
	var row struct {
		Active int64
		Ever   int64
		Door   *string
	}
	err := s.read.WithContext(ctx).Raw(`SELECT
		(SELECT COUNT(*) FROM api_tokens WHERE revoked_at IS NULL) AS active,
		(SELECT COUNT(*) FROM api_tokens) AS ever,
		(SELECT value FROM settings WHERE name = ?) AS door`, localDoorSetting).Scan(&row).Error
	if err != nil {
		return false, s.wrap(fmt.Errorf("store: local door: %w", err))
	}
	if row.Active > 0 {
		return false, nil
	}
	if row.Door != nil {
		return *row.Door == "open", nil
	}
	return row.Ever == 0, nil
}

// ReopenLocalDoor lets requests without a token act as the local admin
// again (in auto mode, on loopback). Returns ECONFLICT while any token is
// active, EUNAVAILABLE when the database is unreachable.
func (s *Store) ReopenLocalDoor(ctx context.Context) error {
	c := ipa.TokenChange{Kind: ipa.LocalDoorReopened}
	err := s.write.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&tokenRow{}).Where("revoked_at IS NULL").Count(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return ipa.Errorf(ipa.ECONFLICT, "", "%d token(s) are active; revoke them first.", n)
		}
		if err := setLocalDoor(tx, "open"); err != nil {
			return err
		}
		return s.notifyToken(tx, c)
	})
	if err != nil {
		return s.wrap(err)
	}
	s.tokenChanged(c)
	return nil
}

// createToken stores r, shuts the anonymous door and tells the watchers, in
// one transaction.
func (s *Store) createToken(ctx context.Context, r tokenRow) error {
	c := ipa.TokenChange{Kind: ipa.TokenCreated, TokenID: r.ID}
	err := s.write.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&r).Error; err != nil {
			return err
		}
		if err := setLocalDoor(tx, "closed"); err != nil {
			return err
		}
		return s.notifyToken(tx, c)
	})
	if err != nil {
		return err
	}
	s.tokenChanged(c)
	return nil
}

// revokeToken revokes the token id and tells the watchers, in one
// transaction; an already revoked token is left as it is.
func (s *Store) revokeToken(ctx context.Context, id string) error {
	c := ipa.TokenChange{Kind: ipa.TokenRevoked, TokenID: id}
	err := s.write.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(`UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, nanos(time.Now()), id).Error; err != nil {
			return err
		}
		return s.notifyToken(tx, c)
	})
	if err != nil {
		return err
	}
	s.tokenChanged(c)
	return nil
}
