package store

import (
	"fmt"
	"slices"

	"gorm.io/gorm"
)

// scanPage runs db, a keyset query for limit+1 rows read in the page's
// direction (backwards when last), and returns the page's rows in order —
// at most limit, turned around when read backwards — and whether a row
// follows them in the direction read. what names the read in errors.
// Returns EUNAVAILABLE when the database is unreachable.
func scanPage[R any](s *Store, db *gorm.DB, limit int, last bool, what string) ([]R, bool, error) {
	var rows []R
	if err := db.Scan(&rows).Error; err != nil {
		return nil, false, s.wrap(fmt.Errorf("store: %s: %w", what, err))
	}
	more := len(rows) > limit
	rows = rows[:min(len(rows), limit)]
	if last {
		slices.Reverse(rows)
	}
	return rows, more, nil
}
