package ipa

import "time"

// WebhookEndpoint is a receiver of outbound events: every event of Types
// (all when empty) after Position is sent to URL, signed with Secret, in
// position order.
type WebhookEndpoint struct {
	ID        string
	URL       string
	Types     []string
	Secret    string // whsec_<base64>; shown to a client only when created
	Paused    bool
	Position  int64 // last global position sent (or skipped by Types)
	CreatedAt time.Time
	CreatedBy string
}

// Wants reports whether the endpoint takes events of this type.
func (e WebhookEndpoint) Wants(eventType string) bool {
	if len(e.Types) == 0 {
		return true
	}
	for _, t := range e.Types {
		if t == eventType {
			return true
		}
	}
	return false
}

// WebhookDeliveryStatus is where one event's delivery to one endpoint stands.
type WebhookDeliveryStatus string

const (
	// WebhookDelivered: the receiver answered 2xx.
	WebhookDelivered WebhookDeliveryStatus = "DELIVERED"
	// WebhookRetrying: the last attempt failed; it is tried again after a
	// back-off (events are delivered in order, so later ones wait).
	WebhookRetrying WebhookDeliveryStatus = "RETRYING"
)

// WebhookDelivery is one line of an endpoint's delivery log: the newest
// attempt at one event.
type WebhookDelivery struct {
	EndpointID     string
	Position       int64
	EventID        string
	EventType      string
	Status         WebhookDeliveryStatus
	Attempts       int
	ResponseStatus *int // HTTP status of the last answer; nil when none came
	LastError      string
	LastAttemptAt  time.Time
}

// WebhookAttempt is what one delivery attempt records in the log.
type WebhookAttempt struct {
	EndpointID     string
	Event          Event
	Delivered      bool
	ResponseStatus *int
	Error          string
	At             time.Time
}

// WebhookDeliveryQuery pages an endpoint's delivery log, newest first.
type WebhookDeliveryQuery struct {
	EndpointID string
	Before     int64 // only positions below this; 0 = from the newest
	Limit      int
}
