package store

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// PageEvents returns one page of events by keyset: the global log by
// position, or one stream by version (by position with ByPosition), each
// read from an index range in one direction or the other, never OFFSET.
// An unknown or malformed TaskID reads nothing. Returns a plain error for a
// Limit outside 1..10000, EUNAVAILABLE when the database is unreachable.
func (s *Store) PageEvents(ctx context.Context, q ipa.EventPageQuery) (ipa.EventPage, error) {
	if q.TaskID != "" && !validID(q.TaskID) {
		return ipa.EventPage{}, nil
	}
	db, err := eventPageQuery(s.read.WithContext(ctx), q)
	if err != nil {
		return ipa.EventPage{}, err
	}
	rows, more, err := scanPage[eventRow](s, db, q.Limit, q.Last, "page events")
	if err != nil {
		return ipa.EventPage{}, err
	}
	page := ipa.EventPage{HasMore: more}
	page.Events = make([]ipa.Event, len(rows))
	for i, r := range rows {
		page.Events[i] = r.event()
	}
	return page, nil
}

// eventPageQuery builds PageEvents' query (Limit+1 rows) on db. Each shape
// is a range of one index: events' primary key (global), (type, position)
// (global, by type), (stream_id, version) and (stream_id, type, version)
// (one stream), (stream_id, position) (one stream by position).
func eventPageQuery(db *gorm.DB, q ipa.EventPageQuery) (*gorm.DB, error) {
	if q.Limit <= 0 || q.Limit > maxEventsRead {
		return nil, fmt.Errorf("store: page events: limit %d outside 1..%d", q.Limit, maxEventsRead)
	}
	key := "version"
	if q.TaskID == "" || q.ByPosition {
		key = "position"
	}
	db = db.Table("events").Select(eventColumns)
	if q.TaskID != "" {
		db = db.Where("stream_id = ?", q.TaskID)
	}
	if len(q.Types) == 1 {
		db = db.Where("type = ?", q.Types[0])
	} else if len(q.Types) > 1 {
		db = db.Where("type IN ?", q.Types)
	}
	if q.After != nil {
		db = db.Where(key+" > ?", *q.After)
	}
	if q.Before != nil {
		db = db.Where(key+" < ?", *q.Before)
	}
	dir := "ASC"
	if q.Last {
		dir = "DESC"
	}
	return db.Order(key + " " + dir).Limit(q.Limit + 1), nil
}

// CountLogEvents returns how many events the global log holds, only of
// types when given. It counts index entries: exact, but linear in the log's
// size. Returns EUNAVAILABLE when the database is unreachable.
func (s *Store) CountLogEvents(ctx context.Context, types []string) (int64, error) {
	db := s.read.WithContext(ctx).Table("events")
	if len(types) > 0 {
		db = db.Where("type IN ?", types)
	}
	var n int64
	if err := db.Count(&n).Error; err != nil {
		return 0, s.wrap(fmt.Errorf("store: count events: %w", err))
	}
	return n, nil
}
