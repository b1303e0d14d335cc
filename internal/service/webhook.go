package service

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// WebhookStore keeps webhook endpoints and their delivery logs.
type WebhookStore interface {
	CreateWebhookEndpoint(ctx context.Context, e ipa.WebhookEndpoint) (ipa.WebhookEndpoint, error)
	WebhookEndpoint(ctx context.Context, id string) (*ipa.WebhookEndpoint, error)
	ListWebhookEndpoints(ctx context.Context) ([]ipa.WebhookEndpoint, error)
	SetWebhookEndpointPaused(ctx context.Context, id string, paused bool) (ipa.WebhookEndpoint, error)
	DeleteWebhookEndpoint(ctx context.Context, id string) (ipa.WebhookEndpoint, error)
	WebhookDeliveries(ctx context.Context, q ipa.WebhookDeliveryQuery) ([]ipa.WebhookDelivery, error)
}

// WebhookDeliverer is the running deliverer as the service sees it
// (*webhook.Deliverer).
type WebhookDeliverer interface {
	// CheckURL returns a message for the client when the URL may not be an
	// endpoint (not http(s), or a private address without
	// --webhook-allow-private).
	CheckURL(ctx context.Context, url string) error
	// Reload makes the deliverer look at the endpoints again.
	Reload()
}

// Limits of an endpoint's settings.
const (
	MaxWebhookURLChars = 2048
	MaxWebhookTypes    = 50
	maxEventTypeChars  = 200
	// DefaultWebhookDeliveries is a delivery log page's default size.
	DefaultWebhookDeliveries = 20
)

// coreEventTypes are the event types an endpoint may name, besides
// runtime events (ipa.RuntimeEventPrefix).
var coreEventTypes = []string{
	ipa.EventTaskCreated, ipa.EventTaskCompleted, ipa.EventTaskCancelled, ipa.EventTaskUpdated, ipa.EventPhaseChanged,
	ipa.EventPodStarted, ipa.EventPodStopped, ipa.EventPodCrashed, ipa.EventPodRestartScheduled,
	ipa.EventPodRestartLimitReached, ipa.EventPodLost, ipa.EventPodReattached, ipa.EventPodOutput,
	// Conversations: a chat bot relays input_requested to people.
	ipa.EventMessageSent, ipa.EventMessageDelivered, ipa.EventInputRequested, ipa.EventInputAnswered, ipa.EventInputExpired,
}

// WebhookService manages outbound webhook endpoints. Every method requires
// ADMIN: endpoints receive every task's events.
type WebhookService struct {
	store     WebhookStore
	deliverer WebhookDeliverer
	secret    func() (string, error)
	log       *slog.Logger
	now       func() time.Time
}

// NewWebhookService returns a WebhookService. newSecret makes endpoint
// secrets (webhook.NewSecret); log nil means slog.Default().
func NewWebhookService(st WebhookStore, d WebhookDeliverer, newSecret func() (string, error), log *slog.Logger) *WebhookService {
	if log == nil {
		log = slog.Default()
	}
	return &WebhookService{store: st, deliverer: d, secret: newSecret, log: log, now: func() time.Time { return time.Now().UTC() }}
}

// hideSecret returns e without its secret: it is shown only on creation.
func hideSecret(e ipa.WebhookEndpoint) ipa.WebhookEndpoint {
	e.Secret = ""
	return e
}

// Endpoints lists every endpoint, oldest first, without secrets.
func (s *WebhookService) Endpoints(ctx context.Context) ([]ipa.WebhookEndpoint, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleAdmin); err != nil {
		return nil, err
	}
	list, err := s.store.ListWebhookEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	for i := range list {
		list[i] = hideSecret(list[i])
	}
	return list, nil
}

// Endpoint returns the endpoint with this id without its secret, or nil
// when there is none.
func (s *WebhookService) Endpoint(ctx context.Context, id string) (*ipa.WebhookEndpoint, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleAdmin); err != nil {
		return nil, err
	}
	e, err := s.store.WebhookEndpoint(ctx, id)
	if err != nil || e == nil {
		return nil, err
	}
	h := hideSecret(*e)
	return &h, nil
}

// CreateEndpoint makes an endpoint that receives the events of types (all
// when empty) committed from now on, and returns it with its secret, which
// is shown only here. Returns EINVALID for a bad or refused URL or an
// unknown event type.
func (s *WebhookService) CreateEndpoint(ctx context.Context, url string, types []string) (ipa.WebhookEndpoint, string, error) {
	admin, err := ipa.RequireRole(ctx, ipa.RoleAdmin)
	if err != nil {
		return ipa.WebhookEndpoint{}, "", err
	}
	url = strings.TrimSpace(url)
	if err := ipa.CheckLine("The url", url); err != nil {
		return ipa.WebhookEndpoint{}, "", err
	}
	if url == "" || utf8.RuneCountInString(url) > MaxWebhookURLChars || !utf8.ValidString(url) {
		return ipa.WebhookEndpoint{}, "", invalidArg("url must be 1 to %d characters.", MaxWebhookURLChars)
	}
	types, err = webhookTypes(types)
	if err != nil {
		return ipa.WebhookEndpoint{}, "", err
	}
	if err := s.deliverer.CheckURL(ctx, url); err != nil {
		return ipa.WebhookEndpoint{}, "", invalidArg("%s", capitalize(err.Error())+".")
	}
	secret, err := s.secret()
	if err != nil {
		return ipa.WebhookEndpoint{}, "", err
	}
	e, err := s.store.CreateWebhookEndpoint(ctx, ipa.WebhookEndpoint{
		URL: url, Types: types, Secret: secret, CreatedAt: s.now(), CreatedBy: admin.ID,
	})
	if err != nil {
		return ipa.WebhookEndpoint{}, "", err
	}
	s.deliverer.Reload()
	s.log.InfoContext(ctx, "webhook endpoint created", "endpoint_id", e.ID, "url", e.URL, "types", e.Types,
		"actor", admin.ID, "remote_addr", auth.RemoteAddr(ctx), "correlation_id", ipa.CorrelationID(ctx))
	return hideSecret(e), secret, nil
}

// webhookTypes checks and sorts an endpoint's event types, dropping
// repeats. Returns EINVALID for an unknown type or too many.
func webhookTypes(types []string) ([]string, error) {
	if len(types) > MaxWebhookTypes {
		return nil, invalidArg("Give at most %d event types.", MaxWebhookTypes)
	}
	out := make([]string, 0, len(types))
	for _, t := range types {
		known := slices.Contains(coreEventTypes, t) ||
			(strings.HasPrefix(t, ipa.RuntimeEventPrefix) && len(t) > len(ipa.RuntimeEventPrefix) && len(t) <= maxEventTypeChars &&
				utf8.ValidString(t) && !strings.ContainsRune(t, 0))
		if !known {
			return nil, invalidArg("Unknown event type %q: give one of %s, or a runtime event (%s…).",
				truncateRunes(t, 50), strings.Join(coreEventTypes, ", "), ipa.RuntimeEventPrefix)
		}
		out = append(out, t)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// SetPaused pauses (delivery stops after the current attempt; the position
// stays) or resumes the endpoint. Returns ENOTFOUND for an unknown id.
func (s *WebhookService) SetPaused(ctx context.Context, id string, paused bool) (ipa.WebhookEndpoint, error) {
	admin, err := ipa.RequireRole(ctx, ipa.RoleAdmin)
	if err != nil {
		return ipa.WebhookEndpoint{}, err
	}
	e, err := s.store.SetWebhookEndpointPaused(ctx, id, paused)
	if err != nil {
		return ipa.WebhookEndpoint{}, err
	}
	s.deliverer.Reload()
	s.log.InfoContext(ctx, "webhook endpoint paused", "endpoint_id", e.ID, "paused", paused,
		"actor", admin.ID, "remote_addr", auth.RemoteAddr(ctx), "correlation_id", ipa.CorrelationID(ctx))
	return hideSecret(e), nil
}

// DeleteEndpoint deletes the endpoint and its delivery log and returns what
// it was. Returns ENOTFOUND for an unknown id.
func (s *WebhookService) DeleteEndpoint(ctx context.Context, id string) (ipa.WebhookEndpoint, error) {
	admin, err := ipa.RequireRole(ctx, ipa.RoleAdmin)
	if err != nil {
		return ipa.WebhookEndpoint{}, err
	}
	e, err := s.store.DeleteWebhookEndpoint(ctx, id)
	if err != nil {
		return ipa.WebhookEndpoint{}, err
	}
	s.deliverer.Reload()
	s.log.InfoContext(ctx, "webhook endpoint deleted", "endpoint_id", e.ID, "url", e.URL,
		"actor", admin.ID, "remote_addr", auth.RemoteAddr(ctx), "correlation_id", ipa.CorrelationID(ctx))
	return hideSecret(e), nil
}

// WebhookDeliveryPage is one page of a delivery log, newest first; each
// line's cursor is its position in decimal.
type WebhookDeliveryPage struct {
	Deliveries  []ipa.WebhookDelivery
	HasNextPage bool
}

// Deliveries returns the endpoint's delivery log, newest first: first lines
// (default 20) after the cursor after. Returns EINVALID for a bad first or
// cursor.
func (s *WebhookService) Deliveries(ctx context.Context, endpointID string, first *int, after *string) (WebhookDeliveryPage, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleAdmin); err != nil {
		return WebhookDeliveryPage{}, err
	}
	n := DefaultWebhookDeliveries
	if first != nil {
		if *first < 1 || *first > MaxPageSize {
			return WebhookDeliveryPage{}, invalidArg("first must be between 1 and %d.", MaxPageSize)
		}
		n = *first
	}
	var before int64
	if after != nil {
		p, err := strconv.ParseInt(*after, 10, 64)
		if err != nil || p < 1 {
			return WebhookDeliveryPage{}, invalidArg("after is not a cursor of this list.")
		}
		before = p
	}
	list, err := s.store.WebhookDeliveries(ctx, ipa.WebhookDeliveryQuery{EndpointID: endpointID, Before: before, Limit: n + 1})
	if err != nil {
		return WebhookDeliveryPage{}, err
	}
	page := WebhookDeliveryPage{HasNextPage: len(list) > n}
	if page.HasNextPage {
		list = list[:n]
	}
	page.Deliveries = list
	return page, nil
}
