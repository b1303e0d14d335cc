package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/ipa-dev/ipa/internal/ipa"
)

type webhookEndpointRow struct {
	ID        string `gorm:"column:id"`
	URL       string `gorm:"column:url"`
	Types     string `gorm:"column:types"`
	Secret    string `gorm:"column:secret"`
	Paused    bool   `gorm:"column:paused"`
	Position  int64  `gorm:"column:position"`
	CreatedAt int64  `gorm:"column:created_at"`
	CreatedBy string `gorm:"column:created_by"`
}

func (r webhookEndpointRow) endpoint() ipa.WebhookEndpoint {
	var types []string
	_ = json.Unmarshal([]byte(r.Types), &types) // written by CreateWebhookEndpoint only
	return ipa.WebhookEndpoint{
		ID: r.ID, URL: r.URL, Types: types, Secret: r.Secret, Paused: r.Paused, Position: r.Position,
		CreatedAt: fromNanos(r.CreatedAt), CreatedBy: r.CreatedBy,
	}
}

const webhookEndpointColumns = "id, url, types, secret, paused, position, created_at, created_by"

// CreateWebhookEndpoint stores e with a new id and the current head
// position, so the endpoint receives the events committed after it was
// made, and returns it as stored. Returns EUNAVAILABLE when the database is
// unreachable.
func (s *Store) CreateWebhookEndpoint(ctx context.Context, e ipa.WebhookEndpoint) (ipa.WebhookEndpoint, error) {
	e.ID = newID()
	if e.Types == nil {
		e.Types = []string{}
	}
	types, err := json.Marshal(e.Types)
	if err != nil {
		return ipa.WebhookEndpoint{}, err
	}
	err = s.write.WithContext(ctx).Exec(`INSERT INTO webhook_endpoints
		(id, url, types, secret, paused, position, created_at, created_by)
		VALUES (?, ?, ?, ?, ?, (SELECT last FROM positions WHERE id = 1), ?, ?)`,
		e.ID, e.URL, string(types), e.Secret, e.Paused, nanos(e.CreatedAt), e.CreatedBy).Error
	if err != nil {
		return ipa.WebhookEndpoint{}, s.wrap(fmt.Errorf("store: create webhook endpoint: %w", err))
	}
	got, err := s.webhookEndpoint(ctx, e.ID)
	if err != nil {
		return ipa.WebhookEndpoint{}, err
	}
	if got == nil {
		return ipa.WebhookEndpoint{}, fmt.Errorf("store: webhook endpoint %s vanished", e.ID)
	}
	return *got, nil
}

// WebhookEndpoint returns the endpoint with this id, or nil and no error
// when there is none. Returns EUNAVAILABLE when the database is unreachable.
func (s *Store) WebhookEndpoint(ctx context.Context, id string) (*ipa.WebhookEndpoint, error) {
	return s.webhookEndpoint(ctx, id)
}

func (s *Store) webhookEndpoint(ctx context.Context, id string) (*ipa.WebhookEndpoint, error) {
	var rows []webhookEndpointRow
	err := s.write.WithContext(ctx).Raw(`SELECT `+webhookEndpointColumns+` FROM webhook_endpoints WHERE id = ?`, id).
		Scan(&rows).Error
	if err != nil {
		return nil, s.wrap(fmt.Errorf("store: webhook endpoint: %w", err))
	}
	if len(rows) == 0 {
		return nil, nil
	}
	e := rows[0].endpoint()
	return &e, nil
}

// ListWebhookEndpoints returns every endpoint, oldest first. Returns
// EUNAVAILABLE when the database is unreachable.
func (s *Store) ListWebhookEndpoints(ctx context.Context) ([]ipa.WebhookEndpoint, error) {
	var rows []webhookEndpointRow
	err := s.read.WithContext(ctx).Raw(`SELECT ` + webhookEndpointColumns + ` FROM webhook_endpoints ORDER BY created_at, id`).
		Scan(&rows).Error
	if err != nil {
		return nil, s.wrap(fmt.Errorf("store: list webhook endpoints: %w", err))
	}
	out := make([]ipa.WebhookEndpoint, len(rows))
	for i, r := range rows {
		out[i] = r.endpoint()
	}
	return out, nil
}

// SetWebhookEndpointPaused pauses or resumes the endpoint and returns it.
// Returns ENOTFOUND for an unknown id, EUNAVAILABLE when the database is
// unreachable.
func (s *Store) SetWebhookEndpointPaused(ctx context.Context, id string, paused bool) (ipa.WebhookEndpoint, error) {
	res := s.write.WithContext(ctx).Exec(`UPDATE webhook_endpoints SET paused = ? WHERE id = ?`, paused, id)
	if res.Error != nil {
		return ipa.WebhookEndpoint{}, s.wrap(fmt.Errorf("store: pause webhook endpoint: %w", res.Error))
	}
	e, err := s.webhookEndpoint(ctx, id)
	if err != nil {
		return ipa.WebhookEndpoint{}, err
	}
	if e == nil {
		return ipa.WebhookEndpoint{}, webhookNotFound(id)
	}
	return *e, nil
}

// DeleteWebhookEndpoint deletes the endpoint and its delivery log and
// returns what it was. Returns ENOTFOUND for an unknown id, EUNAVAILABLE
// when the database is unreachable.
func (s *Store) DeleteWebhookEndpoint(ctx context.Context, id string) (ipa.WebhookEndpoint, error) {
	e, err := s.webhookEndpoint(ctx, id)
	if err != nil {
		return ipa.WebhookEndpoint{}, err
	}
	if e == nil {
		return ipa.WebhookEndpoint{}, webhookNotFound(id)
	}
	// Deliveries go with their endpoint (ON DELETE CASCADE).
	res := s.write.WithContext(ctx).Exec(`DELETE FROM webhook_endpoints WHERE id = ?`, id)
	if res.Error != nil {
		return ipa.WebhookEndpoint{}, s.wrap(fmt.Errorf("store: delete webhook endpoint: %w", res.Error))
	}
	if res.RowsAffected == 0 {
		return ipa.WebhookEndpoint{}, webhookNotFound(id)
	}
	return *e, nil
}

func webhookNotFound(id string) error {
	return ipa.Errorf(ipa.ENOTFOUND, "", "No webhook endpoint with id %q.", id)
}

// ClaimWebhookEndpoint makes owner the endpoint's one deliverer until
// now+ttl, when no other owner holds an unexpired lease; the holder renews
// it the same way. Returns false when another owner holds it or the
// endpoint is gone, EUNAVAILABLE when the database is unreachable.
func (s *Store) ClaimWebhookEndpoint(ctx context.Context, id, owner string, now time.Time, ttl time.Duration) (bool, error) {
	res := s.write.WithContext(ctx).Exec(`UPDATE webhook_endpoints SET lease_owner = ?, lease_until = ?
		WHERE id = ? AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)`,
		owner, nanos(now.Add(ttl)), id, owner, nanos(now))
	if res.Error != nil {
		return false, s.wrap(fmt.Errorf("store: claim webhook endpoint: %w", res.Error))
	}
	return res.RowsAffected == 1, nil
}

// ReleaseWebhookEndpoint gives up owner's lease of the endpoint, so another
// server may take it at once; another owner's lease is left alone.
func (s *Store) ReleaseWebhookEndpoint(ctx context.Context, id, owner string) error {
	err := s.write.WithContext(ctx).Exec(`UPDATE webhook_endpoints SET lease_owner = NULL, lease_until = NULL
		WHERE id = ? AND lease_owner = ?`, id, owner).Error
	if err != nil {
		return s.wrap(fmt.Errorf("store: release webhook endpoint: %w", err))
	}
	return nil
}

// AdvanceWebhookPosition moves the endpoint's position forward to pos, only
// while owner holds its lease. Returns false when owner lost the lease or
// the endpoint is gone (the caller stops delivering), EUNAVAILABLE when the
// database is unreachable. A position at or below the stored one changes
// nothing and returns true.
func (s *Store) AdvanceWebhookPosition(ctx context.Context, id, owner string, pos int64) (bool, error) {
	res := s.write.WithContext(ctx).Exec(`UPDATE webhook_endpoints SET position = CASE WHEN position < ? THEN ? ELSE position END
		WHERE id = ? AND lease_owner = ?`, pos, pos, id, owner)
	if res.Error != nil {
		return false, s.wrap(fmt.Errorf("store: advance webhook position: %w", res.Error))
	}
	return res.RowsAffected == 1, nil
}

// RecordWebhookAttempt adds one attempt to the delivery log line of the
// attempt's endpoint and event. The line keeps the error of the last failed
// attempt, also once delivered. A delivered attempt also moves the
// endpoint's position to the event, in the same transaction and only while
// owner holds the endpoint's lease: held is false (and nothing is written)
// when it does not. Returns EUNAVAILABLE when the database is unreachable, a
// plain error when the endpoint is gone.
func (s *Store) RecordWebhookAttempt(ctx context.Context, owner string, a ipa.WebhookAttempt) (held bool, err error) {
	status := ipa.WebhookRetrying
	if a.Delivered {
		status = ipa.WebhookDelivered
	}
	err = s.write.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if a.Delivered {
			res := tx.Exec(`UPDATE webhook_endpoints SET position = CASE WHEN position < ? THEN ? ELSE position END
				WHERE id = ? AND lease_owner = ?`, a.Event.Position, a.Event.Position, a.EndpointID, owner)
			if res.Error != nil || res.RowsAffected == 0 {
				return res.Error
			}
		}
		held = true
		return tx.Exec(`INSERT INTO webhook_deliveries
			(endpoint_id, position, event_id, event_type, status, attempts, response_status, last_error, last_attempt_at)
			VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)
			ON CONFLICT (endpoint_id, position) DO UPDATE SET status = excluded.status,
				attempts = webhook_deliveries.attempts + 1, response_status = excluded.response_status,
				last_error = CASE WHEN excluded.last_error = '' THEN webhook_deliveries.last_error ELSE excluded.last_error END,
				last_attempt_at = excluded.last_attempt_at`,
			a.EndpointID, a.Event.Position, a.Event.ID, a.Event.Type, string(status), a.ResponseStatus, a.Error, nanos(a.At)).Error
	})
	if err != nil {
		return false, s.wrap(fmt.Errorf("store: record webhook attempt: %w", err))
	}
	return held, nil
}

// TrimWebhookDeliveries keeps only the newest keep lines of the endpoint's
// delivery log. Returns EUNAVAILABLE when the database is unreachable.
func (s *Store) TrimWebhookDeliveries(ctx context.Context, endpointID string, keep int) error {
	err := s.write.WithContext(ctx).Exec(`DELETE FROM webhook_deliveries WHERE endpoint_id = ? AND position <= (
		SELECT position FROM webhook_deliveries WHERE endpoint_id = ? ORDER BY position DESC LIMIT 1 OFFSET ?)`,
		endpointID, endpointID, keep).Error
	if err != nil {
		return s.wrap(fmt.Errorf("store: trim webhook deliveries: %w", err))
	}
	return nil
}

type webhookDeliveryRow struct {
	EndpointID     string `gorm:"column:endpoint_id"`
	Position       int64  `gorm:"column:position"`
	EventID        string `gorm:"column:event_id"`
	EventType      string `gorm:"column:event_type"`
	Status         string `gorm:"column:status"`
	Attempts       int    `gorm:"column:attempts"`
	ResponseStatus *int   `gorm:"column:response_status"`
	LastError      string `gorm:"column:last_error"`
	LastAttemptAt  int64  `gorm:"column:last_attempt_at"`
}

// WebhookDeliveries returns a page of the endpoint's delivery log, newest
// first. Returns a plain error for a Limit below 1, EUNAVAILABLE when the
// database is unreachable.
func (s *Store) WebhookDeliveries(ctx context.Context, q ipa.WebhookDeliveryQuery) ([]ipa.WebhookDelivery, error) {
	if q.Limit <= 0 {
		return nil, fmt.Errorf("store: webhook deliveries: limit must be positive")
	}
	db := s.read.WithContext(ctx).Table("webhook_deliveries").Where("endpoint_id = ?", q.EndpointID)
	if q.Before > 0 {
		db = db.Where("position < ?", q.Before)
	}
	var rows []webhookDeliveryRow
	if err := db.Order("position DESC").Limit(q.Limit).Scan(&rows).Error; err != nil {
		return nil, s.wrap(fmt.Errorf("store: webhook deliveries: %w", err))
	}
	out := make([]ipa.WebhookDelivery, len(rows))
	for i, r := range rows {
		out[i] = ipa.WebhookDelivery{
			EndpointID: r.EndpointID, Position: r.Position, EventID: r.EventID, EventType: r.EventType,
			Status: ipa.WebhookDeliveryStatus(r.Status), Attempts: r.Attempts, ResponseStatus: r.ResponseStatus,
			LastError: r.LastError, LastAttemptAt: fromNanos(r.LastAttemptAt),
		}
	}
	return out, nil
}
