package store

import (
	"context"
	"fmt"
)

// SettingOnce stores value under name in the settings table unless the
// name has a value already, and returns the stored value: every caller, in
// this process or another, gets the one that was stored first. Returns
// EUNAVAILABLE when the database is unreachable.
func (s *Store) SettingOnce(ctx context.Context, name, value string) (string, error) {
	err := s.write.WithContext(ctx).Exec(`INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`,
		name, value).Error
	if err != nil {
		return "", s.wrap(fmt.Errorf("store: setting %s: %w", name, err))
	}
	var vals []string
	if err := s.write.WithContext(ctx).Raw(`SELECT value FROM settings WHERE name = ?`, name).Scan(&vals).Error; err != nil {
		return "", s.wrap(fmt.Errorf("store: setting %s: %w", name, err))
	}
	if len(vals) == 0 {
		return "", fmt.Errorf("store: setting %q vanished", name)
	}
	return vals[0], nil
}

// ReplaceWebhookSecret sets the secret of endpoint id to newSecret if it
// is still old, and reports whether it did: a compare-and-set, so servers
// sealing the same plaintext secret at once leave exactly one value.
// Returns EUNAVAILABLE when the database is unreachable.
func (s *Store) ReplaceWebhookSecret(ctx context.Context, id, old, newSecret string) (bool, error) {
	res := s.write.WithContext(ctx).Exec(`UPDATE webhook_endpoints SET secret = ? WHERE id = ? AND secret = ?`, newSecret, id, old)
	if res.Error != nil {
		return false, s.wrap(fmt.Errorf("store: replace webhook secret: %w", res.Error))
	}
	return res.RowsAffected == 1, nil
}
