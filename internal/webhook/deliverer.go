package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/lifecycle"
)

// Store is what the deliverer reads and records.
type Store interface {
	ListWebhookEndpoints(ctx context.Context) ([]ipa.WebhookEndpoint, error)
	WebhookEndpoint(ctx context.Context, id string) (*ipa.WebhookEndpoint, error)
	ClaimWebhookEndpoint(ctx context.Context, id, owner string, now time.Time, ttl time.Duration) (bool, error)
	ReleaseWebhookEndpoint(ctx context.Context, id, owner string) error
	AdvanceWebhookPosition(ctx context.Context, id, owner string, pos int64) (bool, error)
	RecordWebhookAttempt(ctx context.Context, owner string, a ipa.WebhookAttempt) (held bool, err error)
	TrimWebhookDeliveries(ctx context.Context, endpointID string, keep int) error
	ReadEvents(ctx context.Context, q ipa.EventQuery) ([]ipa.Event, error)
	HeadPosition(ctx context.Context) (int64, error)
}

// Defaults of Config's zero fields.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultMinBackoff   = time.Second
	DefaultMaxBackoff   = 5 * time.Minute
	DefaultLeaseTTL     = 30 * time.Second
	DefaultPollInterval = 2 * time.Second

	// pageSize is how many events one store read takes.
	pageSize = 100
	// logKeep is how many delivery log lines each endpoint keeps, trimmed
	// every trimEvery deliveries.
	logKeep   = 1000
	trimEvery = 100
	// maxErrorChars bounds the error text kept in the log.
	maxErrorChars = 500
	// recordTimeout bounds recording the last delivery on shutdown.
	recordTimeout = 5 * time.Second
)

// Config builds a Deliverer.
type Config struct {
	Store Store
	// Owner names this server in endpoint leases: unique among the servers
	// on one database, and best stable across restarts (a restarted server
	// then takes its endpoints back at once instead of after LeaseTTL).
	Owner string
	// AllowPrivate lets endpoints reach loopback, private and link-local
	// addresses (--webhook-allow-private).
	AllowPrivate bool
	// Timeout bounds one request, from dialling to the end of the answer.
	Timeout time.Duration
	// MinBackoff is the wait after a first failure; it doubles with each
	// further failure of the same event, up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// LeaseTTL is how long an endpoint's lease lasts unrenewed: how soon
	// another server takes over the endpoints of one that died.
	LeaseTTL time.Duration
	// PollInterval is how often endpoints and events are looked for without
	// a notice (endpoints changed on other servers, lost notices).
	PollInterval time.Duration
	// Secrets opens the endpoints' stored secrets (see seal.go); nil: the
	// store holds them in plaintext.
	Secrets  *Sealer
	Registry prometheus.Registerer // nil: no metrics
	Logger   *slog.Logger
	Now      func() time.Time // nil: time.Now
}

// Deliverer runs one worker per active endpoint whose lease it holds. Build
// it with New, start it with Start and stop it with Stop (a
// lifecycle.Service).
type Deliverer struct {
	cfg       Config
	client    *http.Client
	delivered *prometheus.CounterVec

	reload chan struct{}

	mu      sync.Mutex
	workers map[string]*worker

	life lifecycle.Base
}

type worker struct {
	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Deliverer for cfg, with defaults for its zero fields.
// Returns an error without a Store or Owner.
func New(cfg Config) (*Deliverer, error) {
	if cfg.Store == nil || cfg.Owner == "" {
		return nil, errors.New("webhook: deliverer needs a store and an owner")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	// A lease renewed a third of its time ago must outlast one request.
	cfg.LeaseTTL = max(cfg.LeaseTTL, 3*cfg.Timeout)
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	d := &Deliverer{
		cfg:     cfg,
		client:  newClient(cfg.Timeout, cfg.AllowPrivate),
		reload:  make(chan struct{}, 1),
		workers: map[string]*worker{},
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_webhook_deliveries_total",
			Help: "Webhook delivery attempts by result (delivered, failed).",
		}, []string{"result"}),
	}
	for _, r := range []string{"delivered", "failed"} {
		d.delivered.WithLabelValues(r)
	}
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(d.delivered); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// newClient returns the client every delivery uses: bounded in time, no
// proxy (the dial check must see the real target), never following
// redirects (a 3xx is a failed attempt), and refusing private addresses at
// dial time unless allowPrivate.
func newClient(timeout time.Duration, allowPrivate bool) *http.Client {
	dialer := &net.Dialer{Timeout: timeout}
	if !allowPrivate {
		dialer.Control = dialControl
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// CheckURL returns a client-facing error when raw may not be an endpoint's
// URL (see the package function CheckURL).
func (d *Deliverer) CheckURL(ctx context.Context, raw string) error {
	return CheckURL(ctx, raw, d.cfg.AllowPrivate)
}

// Start runs the deliverer until Stop. It returns at once. The workers run
// until Stop whatever ctx does: a request in flight is let finish and
// recorded, and the endpoints' leases are released, only by Stop.
func (d *Deliverer) Start(ctx context.Context) error {
	ctx, ok := d.life.StartInit(context.WithoutCancel(ctx))
	if ok {
		d.life.Go(func() { d.run(ctx) })
	}
	return nil
}

// Stop stops every worker and waits for them: a request in flight is let
// finish (up to Config.Timeout) and, when taken, recorded, so the next
// deliverer normally does not send it again. The leases they held are
// released so another server takes over at once. Safe to call more than
// once and without Start.
func (d *Deliverer) Stop() { d.life.Stop() }

// Reload makes the deliverer look at the endpoints again now (one was
// created, paused, resumed or deleted). It never blocks.
func (d *Deliverer) Reload() {
	select {
	case d.reload <- struct{}{}:
	default:
	}
}

// Notify tells the workers that events were committed. It never blocks.
func (d *Deliverer) Notify() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, w := range d.workers {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (d *Deliverer) run(ctx context.Context) {
	defer d.stopWorkers(nil)
	t := time.NewTicker(d.cfg.PollInterval)
	defer t.Stop()
	for {
		d.sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-d.reload:
		case <-t.C:
		}
	}
}

// sync runs a worker for each endpoint that is not paused, and stops the
// workers of endpoints paused or deleted since.
func (d *Deliverer) sync(ctx context.Context) {
	list, err := d.cfg.Store.ListWebhookEndpoints(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.cfg.Logger.Warn("webhook endpoints unreadable", "err", err)
		}
		return
	}
	active := map[string]bool{}
	for _, e := range list {
		if !e.Paused {
			active[e.ID] = true
		}
	}
	d.stopWorkers(active)
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range active {
		if _, ok := d.workers[id]; ok {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		w := &worker{wake: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
		d.workers[id] = w
		go func() {
			defer close(w.done)
			d.work(wctx, id, w.wake)
		}()
	}
}

// stopWorkers stops and forgets every worker whose endpoint is not in keep
// (all of them when keep is nil), and waits for them.
func (d *Deliverer) stopWorkers(keep map[string]bool) {
	d.mu.Lock()
	var stopped []*worker
	for id, w := range d.workers {
		if !keep[id] {
			w.cancel()
			stopped = append(stopped, w)
			delete(d.workers, id)
		}
	}
	d.mu.Unlock()
	for _, w := range stopped {
		<-w.done
	}
}

// lease is a worker's hold on its endpoint: renewed is when it was last
// taken or renewed (zero: not held).
type lease struct {
	id        string
	renewed   time.Time
	delivered int // events delivered by this worker, to trim the log now and then
}

// errLeaseLost ends a worker's turn: another server delivers to the
// endpoint now, or it is gone.
var errLeaseLost = errors.New("webhook: endpoint lease lost")

// work delivers to one endpoint while ctx lasts: it takes the endpoint's
// lease, then sends the events after its position in order, advancing the
// position after each 2xx. Without the lease it waits and tries again.
func (d *Deliverer) work(ctx context.Context, id string, wake <-chan struct{}) {
	l := &lease{id: id}
	defer func() {
		// Released with a fresh context: ctx is already over.
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.cfg.Store.ReleaseWebhookEndpoint(rctx, id, d.cfg.Owner); err != nil {
			d.cfg.Logger.Warn("webhook lease not released", "endpoint", id, "err", err)
		}
	}()
	for ctx.Err() == nil {
		more, err := d.turn(ctx, l)
		if err != nil && ctx.Err() == nil && !errors.Is(err, errLeaseLost) {
			d.cfg.Logger.Warn("webhook delivery stalled", "endpoint", id, "err", err)
		}
		if more && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-time.After(d.cfg.PollInterval):
		}
	}
}

// turn delivers one page of events to the endpoint. It returns more when a
// full page was sent (so the next may follow at once).
func (d *Deliverer) turn(ctx context.Context, l *lease) (more bool, err error) {
	id := l.id
	if err := d.claim(ctx, l); err != nil {
		return false, err
	}
	e, err := d.cfg.Store.WebhookEndpoint(ctx, id)
	if err != nil {
		return false, err
	}
	if e == nil || e.Paused {
		return false, errLeaseLost
	}
	// The head is read before the events: every position up to it is
	// committed, so when the filtered page is short the endpoint has seen
	// everything up to the head and its position may jump there.
	head, err := d.cfg.Store.HeadPosition(ctx)
	if err != nil {
		return false, err
	}
	events, err := d.cfg.Store.ReadEvents(ctx, ipa.EventQuery{After: e.Position, Types: e.Types, Limit: pageSize})
	if err != nil {
		return false, err
	}
	for _, ev := range events {
		if err := d.deliver(ctx, l, *e, ev); err != nil {
			return false, err
		}
	}
	if len(events) == pageSize {
		return true, nil
	}
	if head > e.Position && len(e.Types) > 0 {
		if err := d.advance(ctx, l, head); err != nil {
			return false, err
		}
	}
	return false, nil
}

// claim takes the endpoint's lease, or renews it once a third of its time
// has passed: a lease renewed less than that ago still has two thirds left,
// more than one request takes (see New), so most attempts cost no write.
// Returns errLeaseLost when another server holds it.
func (d *Deliverer) claim(ctx context.Context, l *lease) error {
	now := d.cfg.Now()
	if !l.renewed.IsZero() && now.Sub(l.renewed) < d.cfg.LeaseTTL/3 {
		return nil
	}
	ok, err := d.cfg.Store.ClaimWebhookEndpoint(ctx, l.id, d.cfg.Owner, now, d.cfg.LeaseTTL)
	if err != nil {
		return err
	}
	if !ok {
		l.renewed = time.Time{}
		return errLeaseLost
	}
	l.renewed = now
	return nil
}

func (d *Deliverer) advance(ctx context.Context, l *lease, pos int64) error {
	ok, err := d.cfg.Store.AdvanceWebhookPosition(ctx, l.id, d.cfg.Owner, pos)
	if err != nil {
		return err
	}
	if !ok {
		l.renewed = time.Time{}
		return errLeaseLost
	}
	return nil
}

// deliver sends one event until the receiver takes it, backing off between
// failures, then advances the endpoint's position past it. Returns when ctx
// ends or the lease is lost, without advancing.
func (d *Deliverer) deliver(ctx context.Context, l *lease, e ipa.WebhookEndpoint, ev ipa.Event) error {
	body, err := payload(ev)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := d.backoff(ctx, l, attempt); err != nil {
				return err
			}
			// Paused or deleted while failing: stop here; the position
			// still names this event.
			cur, err := d.cfg.Store.WebhookEndpoint(ctx, e.ID)
			if err != nil {
				return err
			}
			if cur == nil || cur.Paused {
				return errLeaseLost
			}
		}
		if err := d.claim(ctx, l); err != nil {
			return err
		}
		// A request in flight when the server stops is let finish (the
		// client's Timeout bounds it) and, when the receiver took it,
		// recorded, so the next deliverer does not start with it.
		status, sendErr := d.send(context.WithoutCancel(ctx), e, ev, body)
		if ctx.Err() != nil && sendErr != nil {
			return ctx.Err() // shutting down: a failed attempt does not count
		}
		at := ipa.WebhookAttempt{EndpointID: e.ID, Event: ev, Delivered: sendErr == nil, ResponseStatus: status, At: d.cfg.Now().UTC()}
		if sendErr != nil {
			at.Error = truncate(sendErr.Error(), maxErrorChars)
			d.delivered.WithLabelValues("failed").Inc()
		} else {
			d.delivered.WithLabelValues("delivered").Inc()
		}
		// A delivered attempt moves the position in the same write.
		held, err := d.record(ctx, at)
		if err != nil {
			return err
		}
		if !held {
			l.renewed = time.Time{}
			return errLeaseLost
		}
		if sendErr != nil {
			d.cfg.Logger.Info("webhook attempt failed", "endpoint", e.ID, "position", ev.Position, "attempt", attempt+1, "err", sendErr)
			continue
		}
		l.delivered++
		if l.delivered%trimEvery == 0 && ctx.Err() == nil {
			if err := d.cfg.Store.TrimWebhookDeliveries(ctx, e.ID, logKeep); err != nil {
				d.cfg.Logger.Warn("webhook log not trimmed", "endpoint", e.ID, "err", err)
			}
		}
		return nil
	}
}

// record writes one attempt, with a context of its own when ctx is over
// (shutting down after the receiver took the event: see deliver).
func (d *Deliverer) record(ctx context.Context, at ipa.WebhookAttempt) (held bool, err error) {
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		defer cancel()
	}
	return d.cfg.Store.RecordWebhookAttempt(ctx, d.cfg.Owner, at)
}

// backoff waits before the attempt'th retry: MinBackoff doubled per earlier
// failure, capped at MaxBackoff, less up to a fifth at random so endpoints
// failing together do not retry in step. The lease is renewed meanwhile.
func (d *Deliverer) backoff(ctx context.Context, l *lease, attempt int) error {
	wait := d.cfg.MaxBackoff
	if attempt-1 < 30 {
		wait = min(d.cfg.MinBackoff<<(attempt-1), d.cfg.MaxBackoff)
	}
	wait -= time.Duration(rand.Int64N(int64(wait)/5 + 1))
	renew := d.cfg.LeaseTTL / 3
	for wait > 0 {
		step := min(wait, renew)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(step):
		}
		wait -= step
		if wait > 0 {
			if err := d.claim(ctx, l); err != nil {
				return err
			}
		}
	}
	return nil
}

// send makes one signed POST of body. Returns the answer's status when one
// came, and an error unless it was 2xx.
func (d *Deliverer) send(ctx context.Context, e ipa.WebhookEndpoint, ev ipa.Event, body []byte) (*int, error) {
	ts := d.cfg.Now().Unix()
	secret := e.Secret
	if d.cfg.Secrets != nil {
		var err error
		if secret, err = d.cfg.Secrets.Open(secret); err != nil {
			return nil, err
		}
	}
	sig, err := Sign(secret, ev.ID, ts, body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ipa-webhooks")
	req.Header.Set("webhook-id", ev.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", sig)
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	status := resp.StatusCode
	switch {
	case status >= 200 && status < 300:
		return &status, nil
	case status >= 300 && status < 400:
		return &status, fmt.Errorf("HTTP %d: redirects are not followed", status)
	default:
		return &status, fmt.Errorf("HTTP %d", status)
	}
}

// Payload is the JSON body of every delivery, in Standard Webhooks' shape:
// the event type, a timestamp and the data (the event as GraphQL shows it).
type Payload struct {
	Type      string      `json:"type"`
	Timestamp time.Time   `json:"timestamp"`
	Data      PayloadData `json:"data"`
}

// PayloadData is the event in a delivery's body.
type PayloadData struct {
	ID            string          `json:"id"`
	TaskID        string          `json:"taskId"`
	Version       int64           `json:"version"`
	Position      string          `json:"position"` // decimal, as in GraphQL
	Type          string          `json:"type"`
	Data          json.RawMessage `json:"data"`
	ActorID       string          `json:"actorId,omitempty"`
	CorrelationID string          `json:"correlationId,omitempty"`
	CausationID   string          `json:"causationId,omitempty"`
	OccurredAt    time.Time       `json:"occurredAt"`
}

func payload(ev ipa.Event) ([]byte, error) {
	data := ev.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	return json.Marshal(Payload{Type: ev.Type, Timestamp: ev.OccurredAt.UTC(), Data: PayloadData{
		ID: ev.ID, TaskID: ev.TaskID, Version: ev.Version, Position: strconv.FormatInt(ev.Position, 10), Type: ev.Type,
		Data: data, ActorID: ev.ActorID, CorrelationID: ev.CorrelationID, CausationID: ev.CausationID,
		OccurredAt: ev.OccurredAt.UTC(),
	}})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
