package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// projectRequests keeps the input_requests table (the inbox) in step with
// the events an append writes, in the append's transaction: a row per
// input_requested, its state moved by input_answered and input_expired, and
// every pending row of a task that closes cancelled. The stream stays the
// truth (ipa.FoldConversation); the table is what lists requests across
// tasks and finds a request's task.
func projectRequests(tx *gorm.DB, cur, next *ipa.Task, events []ipa.Event) error {
	for _, e := range events {
		switch e.Type {
		case ipa.EventInputRequested:
			var d ipa.InputRequestedData
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return fmt.Errorf("decode %s: %w", e.Type, err)
			}
			var exp any
			if d.ExpiresAt != nil {
				exp = nanos(*d.ExpiresAt)
			}
			if err := tx.Exec(`INSERT INTO input_requests (id, task_id, state, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
				d.RequestID, e.TaskID, string(ipa.InputPending), nanos(e.OccurredAt), exp).Error; err != nil {
				return err
			}
		case ipa.EventInputAnswered, ipa.EventInputExpired:
			var d struct {
				RequestID string `json:"requestId"`
			}
			if err := json.Unmarshal(e.Data, &d); err != nil {
				return fmt.Errorf("decode %s: %w", e.Type, err)
			}
			state := ipa.InputAnswered
			if e.Type == ipa.EventInputExpired {
				state = ipa.InputExpired
			}
			if err := tx.Exec(`UPDATE input_requests SET state = ? WHERE id = ? AND state = ?`,
				string(state), d.RequestID, string(ipa.InputPending)).Error; err != nil {
				return err
			}
		}
	}
	if !cur.Status.Closed() && next.Status.Closed() {
		return tx.Exec(`UPDATE input_requests SET state = ? WHERE task_id = ? AND state = ?`,
			string(ipa.InputCancelled), next.ID, string(ipa.InputPending)).Error
	}
	return nil
}

// RequestRef is an inbox row: which task a request belongs to.
type RequestRef struct {
	ID     string
	TaskID string
	State  ipa.InputState
}

// RequestTask returns the task of input request id, "" when there is none.
// Returns EUNAVAILABLE when the database is unreachable.
func (s *Store) RequestTask(ctx context.Context, id string) (string, error) {
	var ids []string
	if err := s.read.WithContext(ctx).Raw(`SELECT task_id FROM input_requests WHERE id = ?`, id).Scan(&ids).Error; err != nil {
		return "", s.wrap(fmt.Errorf("store: request task: %w", err))
	}
	if len(ids) == 0 {
		return "", nil
	}
	return ids[0], nil
}

// ListRequests returns inbox rows in state (all states when empty), oldest
// first, after the request id after ("" from the start), at most limit.
// Returns EUNAVAILABLE when the database is unreachable.
func (s *Store) ListRequests(ctx context.Context, state ipa.InputState, after string, limit int) ([]RequestRef, error) {
	db := s.read.WithContext(ctx).Table("input_requests").Select("id, task_id, state")
	if state != "" {
		db = db.Where("state = ?", string(state))
	}
	if after != "" {
		db = db.Where("id > ?", after)
	}
	var out []RequestRef
	if err := db.Order("id").Limit(limit).Scan(&out).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: list requests: %w", err))
	}
	return out, nil
}

// DueRequests returns pending requests whose expiry passed by now, at most
// limit, soonest first: the durable expiry timer's sweep.
func (s *Store) DueRequests(ctx context.Context, now time.Time, limit int) ([]RequestRef, error) {
	var out []RequestRef
	err := s.read.WithContext(ctx).Table("input_requests").Select("id, task_id, state").
		Where("state = ? AND expires_at IS NOT NULL AND expires_at <= ?", string(ipa.InputPending), nanos(now)).
		Order("expires_at").Limit(limit).Scan(&out).Error
	if err != nil {
		return nil, s.wrap(fmt.Errorf("store: due requests: %w", err))
	}
	return out, nil
}

// requestRow is an input_requests row.
type requestRow struct {
	ID        string
	TaskID    string
	State     string
	CreatedAt int64
	ExpiresAt *int64
}

// reprojectRequests folds the inbox from the log (input_requested and what
// ends a request, in stream order) and compares it with input_requests; unless
// check, it rewrites the table when any row differs. Returns how many rows
// differed.
func (s *Store) reprojectRequests(ctx context.Context, check bool) (int, error) {
	want := map[string]requestRow{}
	var after int64
	for {
		evs, err := s.ReadEvents(ctx, ipa.EventQuery{After: after, Limit: maxEventsRead, Types: []string{
			ipa.EventInputRequested, ipa.EventInputAnswered, ipa.EventInputExpired, ipa.EventTaskCompleted, ipa.EventTaskCancelled}})
		if err != nil {
			return 0, err
		}
		for _, e := range evs {
			switch e.Type {
			case ipa.EventInputRequested:
				var d ipa.InputRequestedData
				if err := json.Unmarshal(e.Data, &d); err != nil {
					return 0, fmt.Errorf("store: reproject requests: decode %s: %w", e.ID, err)
				}
				r := requestRow{ID: d.RequestID, TaskID: e.TaskID, State: string(ipa.InputPending), CreatedAt: nanos(e.OccurredAt)}
				if d.ExpiresAt != nil {
					x := nanos(*d.ExpiresAt)
					r.ExpiresAt = &x
				}
				want[r.ID] = r
			case ipa.EventInputAnswered, ipa.EventInputExpired:
				var d struct {
					RequestID string `json:"requestId"`
				}
				if err := json.Unmarshal(e.Data, &d); err != nil {
					return 0, fmt.Errorf("store: reproject requests: decode %s: %w", e.ID, err)
				}
				if r, ok := want[d.RequestID]; ok && r.State == string(ipa.InputPending) {
					r.State = string(ipa.InputAnswered)
					if e.Type == ipa.EventInputExpired {
						r.State = string(ipa.InputExpired)
					}
					want[d.RequestID] = r
				}
			default: // the task closed: its pending requests are cancelled
				for id, r := range want {
					if r.TaskID == e.TaskID && r.State == string(ipa.InputPending) {
						r.State = string(ipa.InputCancelled)
						want[id] = r
					}
				}
			}
		}
		if len(evs) < maxEventsRead {
			break
		}
		after = evs[len(evs)-1].Position
	}
	var have []requestRow
	if err := s.read.WithContext(ctx).Raw(`SELECT id, task_id, state, created_at, expires_at FROM input_requests`).Scan(&have).Error; err != nil {
		return 0, s.wrap(fmt.Errorf("store: reproject requests: %w", err))
	}
	diff := 0
	seen := map[string]bool{}
	for _, h := range have {
		seen[h.ID] = true
		w, ok := want[h.ID]
		if !ok || w.TaskID != h.TaskID || w.State != h.State || w.CreatedAt != h.CreatedAt || !sameNanos(w.ExpiresAt, h.ExpiresAt) {
			diff++
		}
	}
	for id := range want {
		if !seen[id] {
			diff++
		}
	}
	if diff == 0 || check {
		return diff, nil
	}
	err := s.inTx(ctx, func(tx *gorm.DB) error {
		if err := tx.Exec(`DELETE FROM input_requests`).Error; err != nil {
			return err
		}
		for _, r := range want {
			if err := tx.Exec(`INSERT INTO input_requests (id, task_id, state, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
				r.ID, r.TaskID, r.State, r.CreatedAt, r.ExpiresAt).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return diff, s.wrap(fmt.Errorf("store: reproject requests: %w", err))
	}
	return diff, nil
}

func sameNanos(a, b *int64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}
