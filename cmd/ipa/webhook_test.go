package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/webhook"
)

// receiver is a real HTTP receiver of webhooks on loopback. It verifies
// every signature, fails with 500 while failing is set, answers too late
// once when stall is set, and records what it accepted.
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	secret    string
	failing   bool
	stall     time.Duration // the next request answers after this, then it resets
	attempts  int
	accepted  []int64 // positions answered 2xx, in arrival order
	badSigned int
	delay     time.Duration // every answer waits this long
	inflight  int
	overlap   int // requests that arrived while another was in flight
}

func (r *receiver) overlaps() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.overlap
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	ts, _ := strconv.ParseInt(req.Header.Get("webhook-timestamp"), 10, 64)
	var p webhook.Payload
	_ = json.Unmarshal(body, &p)
	pos, _ := strconv.ParseInt(p.Data.Position, 10, 64)

	r.mu.Lock()
	r.attempts++
	ok := webhook.Verify(r.secret, req.Header.Get("webhook-id"), ts, body, req.Header.Get("webhook-signature")) &&
		req.Header.Get("webhook-id") == p.Data.ID && pos > 0
	if !ok {
		r.badSigned++
	}
	failing, stall, delay := r.failing, r.stall, r.delay
	r.stall = 0
	if r.inflight > 0 {
		r.overlap++
	}
	r.inflight++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inflight--
		r.mu.Unlock()
	}()
	time.Sleep(delay)

	if stall > 0 {
		select {
		case <-time.After(stall):
		case <-req.Context().Done():
		}
		return
	}
	if failing || !ok {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	r.mu.Lock()
	r.accepted = append(r.accepted, pos)
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) set(fn func(r *receiver)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(r)
}

func (r *receiver) snapshot() (accepted []int64, attempts, bad int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.accepted), r.attempts, r.badSigned
}

// positions returns the global positions of every event of the tasks, only
// of types when given.
func positions(t *testing.T, s *server, ids []string, types ...string) []int64 {
	t.Helper()
	var out []int64
	for _, id := range ids {
		var resp struct {
			Task struct {
				Events struct {
					Edges []struct{ Node struct{ Position string } }
				}
			}
		}
		vars := map[string]any{"id": id}
		if len(types) > 0 {
			vars["types"] = types
		}
		s.must(t, `query($id: ID!, $types: [String!]) { task(id: $id) { events(first: 500, types: $types) { edges { node { position } } } } }`,
			vars, &resp)
		for _, e := range resp.Task.Events.Edges {
			p, err := strconv.ParseInt(e.Node.Position, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// inOrderCovering checks that accepted, read in arrival order, never goes
// back past what was already accepted except to repeat (at-least-once
// allows duplicates after a restart), and covers every wanted position.
func inOrderCovering(accepted, want []int64) string {
	seen := map[int64]bool{}
	var high int64
	for _, p := range accepted {
		if p < high && !seen[p] {
			return fmt.Sprintf("position %d arrived after %d and was never sent before: out of order (%v)", p, high, accepted)
		}
		seen[p] = true
		high = max(high, p)
	}
	for _, p := range want {
		if !seen[p] {
			return fmt.Sprintf("position %d not delivered (accepted %v, want %v)", p, accepted, want)
		}
	}
	return ""
}

const createEndpoint = `mutation($in: CreateWebhookEndpointInput!) {
	createWebhookEndpoint(input: $in) { secret endpoint { id url types paused position } } }`

type endpointView struct {
	ID       string
	URL      string
	Types    []string
	Paused   bool
	Position string
}

type deliveryView struct {
	Position       string
	EventID        string
	EventType      string
	Status         string
	Attempts       int
	ResponseStatus *int
	LastError      *string
	LastAttemptAt  string
}

func (s *server) deliveries(t *testing.T, id string) []deliveryView {
	t.Helper()
	var out struct {
		WebhookEndpoint *struct {
			Deliveries struct{ Edges []struct{ Node deliveryView } }
		}
	}
	s.must(t, `query($id: ID!) { webhookEndpoint(id: $id) { deliveries(first: 1000) { edges { node {
		position eventId eventType status attempts responseStatus lastError lastAttemptAt } } } } }`, map[string]any{"id": id}, &out)
	if out.WebhookEndpoint == nil {
		t.Fatalf("endpoint %s not found", id)
	}
	var list []deliveryView
	for _, e := range out.WebhookEndpoint.Deliveries.Edges {
		list = append(list, e.Node)
	}
	return list
}

// TestWebhooksDeliverInOrderThroughFailuresAndRestart: a real receiver on
// loopback fails with 500, then times out, then recovers; the server is
// killed mid-way and started again. Every event arrives, signed, in position
// order, none skipped, and the delivery log counts the retries.
func TestWebhooksDeliverInOrderThroughFailuresAndRestart(t *testing.T) {
	t.Parallel()
	h := newHome(t, "--webhook-allow-private", "--webhook-min-backoff", "20ms", "--webhook-max-backoff", "200ms",
		"--webhook-timeout", "500ms")
	s := h.start()
	rcv := newReceiver(t)

	var created struct {
		CreateWebhookEndpoint struct {
			Secret   string
			Endpoint endpointView
		}
	}
	s.must(t, createEndpoint, map[string]any{"in": map[string]any{"url": rcv.srv.URL + "/hook"}}, &created)
	ep := created.CreateWebhookEndpoint
	if !strings.HasPrefix(ep.Secret, webhook.SecretPrefix) || ep.Endpoint.Paused || len(ep.Endpoint.Types) != 0 {
		t.Fatalf("created %+v", ep)
	}
	rcv.set(func(r *receiver) { r.secret = ep.Secret; r.failing = true })

	// The secret is shown once: the endpoint type has no such field.
	_, errs := s.do(t, `{ webhookEndpoints { id secret } }`, nil)
	if len(errs) == 0 {
		t.Fatal("an endpoint's secret must not be readable after creation")
	}
	var listed struct{ WebhookEndpoints []endpointView }
	s.must(t, `{ webhookEndpoints { id url types paused position } }`, nil, &listed)
	if len(listed.WebhookEndpoints) != 1 || listed.WebhookEndpoints[0].ID != ep.Endpoint.ID {
		t.Fatalf("listed %+v", listed)
	}

	var ids []string
	for i := range 3 {
		ids = append(ids, s.createTask(t, map[string]any{"title": fmt.Sprintf("hooked %d", i)}))
	}
	// Several failed attempts at the first event, none accepted.
	eventually(t, 20*time.Second, func() string {
		acc, attempts, _ := rcv.snapshot()
		if len(acc) > 0 {
			return fmt.Sprintf("accepted %v while failing", acc)
		}
		if attempts < 3 {
			return fmt.Sprintf("%d attempts", attempts)
		}
		return ""
	})
	first := s.deliveries(t, ep.Endpoint.ID)
	if len(first) != 1 || first[0].Status != "RETRYING" || first[0].Attempts < 2 ||
		first[0].ResponseStatus == nil || *first[0].ResponseStatus != 500 || first[0].LastError == nil {
		t.Fatalf("delivery log while failing: %+v", first)
	}

	// Killed while the receiver fails; more events while it is down.
	s.crash(t)
	s = h.start()
	for i := range 3 {
		ids = append(ids, s.createTask(t, map[string]any{"title": fmt.Sprintf("after restart %d", i)}))
	}
	// One attempt times out, then the receiver recovers.
	rcv.set(func(r *receiver) { r.failing = false; r.stall = 2 * time.Second })

	want := positions(t, s, ids)
	eventually(t, 30*time.Second, func() string {
		acc, _, _ := rcv.snapshot()
		return inOrderCovering(acc, want)
	})
	acc, attempts, bad := rcv.snapshot()
	if bad != 0 {
		t.Fatalf("%d requests with a bad signature", bad)
	}
	if attempts <= len(want) {
		t.Fatalf("%d attempts for %d events: the failures were not retried", attempts, len(want))
	}

	// The log: every event delivered; the first one after several attempts,
	// its last failure a timeout (no HTTP status).
	eventually(t, 10*time.Second, func() string {
		log := s.deliveries(t, ep.Endpoint.ID)
		if len(log) != len(want) {
			return fmt.Sprintf("log has %d lines, want %d", len(log), len(want))
		}
		for _, d := range log {
			if d.Status != "DELIVERED" {
				return fmt.Sprintf("line %+v not delivered", d)
			}
		}
		oldest := log[len(log)-1]
		if oldest.Position != strconv.FormatInt(want[0], 10) || oldest.Attempts < 3 || oldest.LastError == nil ||
			!strings.Contains(*oldest.LastError, "Timeout") {
			return fmt.Sprintf("oldest line %+v (lastError %v), want several attempts ending in a timeout", oldest, orNil(oldest.LastError))
		}
		return ""
	})
	var pos struct{ WebhookEndpoint endpointView }
	s.must(t, `query($id: ID!) { webhookEndpoint(id: $id) { position } }`, map[string]any{"id": ep.Endpoint.ID}, &pos)
	if pos.WebhookEndpoint.Position != strconv.FormatInt(want[len(want)-1], 10) {
		t.Fatalf("endpoint position %s, want %d", pos.WebhookEndpoint.Position, want[len(want)-1])
	}
	if m := metric(t, s, `ipa_webhook_deliveries_total{result="failed"}`); m < 1 {
		t.Fatalf("failed deliveries metric %v", m)
	}

	// Paused: nothing is sent; resumed: it continues after its position.
	var paused struct {
		PauseWebhookEndpoint struct{ Endpoint endpointView }
	}
	s.must(t, `mutation($id: ID!) { pauseWebhookEndpoint(id: $id) { endpoint { id paused } } }`, map[string]any{"id": ep.Endpoint.ID}, &paused)
	if !paused.PauseWebhookEndpoint.Endpoint.Paused {
		t.Fatal("not paused")
	}
	time.Sleep(300 * time.Millisecond) // a worker busy with an attempt finishes it
	before, _, _ := rcv.snapshot()
	late := s.createTask(t, map[string]any{"title": "while paused"})
	time.Sleep(time.Second)
	if got, _, _ := rcv.snapshot(); len(got) != len(before) {
		t.Fatalf("a paused endpoint received %v", got[len(before):])
	}
	s.must(t, `mutation($id: ID!) { resumeWebhookEndpoint(id: $id) { endpoint { id paused } } }`, map[string]any{"id": ep.Endpoint.ID}, nil)
	want = positions(t, s, append(ids, late))
	eventually(t, 20*time.Second, func() string {
		acc, _, _ := rcv.snapshot()
		return inOrderCovering(acc, want)
	})

	var deleted struct {
		DeleteWebhookEndpoint struct{ Endpoint endpointView }
	}
	s.must(t, `mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { endpoint { id } } }`, map[string]any{"id": ep.Endpoint.ID}, &deleted)
	s.must(t, `{ webhookEndpoints { id } }`, nil, &listed)
	if len(listed.WebhookEndpoints) != 0 {
		t.Fatalf("after delete: %+v", listed)
	}
	s.mustFail(t, `mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { endpoint { id } } }`, map[string]any{"id": ep.Endpoint.ID}, "NOT_FOUND", "")
	t.Logf("%d attempts for %d events (%d accepted, duplicates included)", attempts, len(want), len(acc))
}

func orNil(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// metric reads one sample from /metrics; -1 when absent.
func metric(t *testing.T, s *server, name string) float64 {
	t.Helper()
	resp, err := s.client.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return -1
}

// TestWebhooksRefusePrivateTargetsAndNonAdmins: without
// --webhook-allow-private a loopback, private or link-local target is
// refused; bad input is BAD_USER_INPUT; only admins manage endpoints.
func TestWebhooksRefusePrivateTargetsAndNonAdmins(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	s := h.start()
	rcv := newReceiver(t)
	for _, url := range []string{rcv.srv.URL, "http://localhost:9/", "http://10.0.0.1/", "http://169.254.169.254/latest", "http://[::1]:80/"} {
		e := s.mustFail(t, createEndpoint, map[string]any{"in": map[string]any{"url": url}}, "BAD_USER_INPUT", "INVALID_ARGUMENT")
		if !strings.Contains(e.Message, "private") {
			t.Fatalf("%s refused with %q", url, e.Message)
		}
	}
	s.mustFail(t, createEndpoint, map[string]any{"in": map[string]any{"url": "ftp://example.com/"}}, "BAD_USER_INPUT", "INVALID_ARGUMENT")
	s.mustFail(t, createEndpoint, map[string]any{"in": map[string]any{"url": "https://example.com/", "types": []string{"no_such_type"}}},
		"BAD_USER_INPUT", "INVALID_ARGUMENT")
	var listed struct{ WebhookEndpoints []endpointView }
	s.must(t, `{ webhookEndpoints { id } }`, nil, &listed)
	if len(listed.WebhookEndpoints) != 0 {
		t.Fatalf("a refused endpoint was stored: %+v", listed)
	}

	_, viewer := h.mintCLI(t, "watcher", "viewer")
	_, operator := h.mintCLI(t, "runner", "operator")
	for _, tok := range []string{viewer, operator} {
		for _, q := range []string{`{ webhookEndpoints { id } }`, `mutation { createWebhookEndpoint(input: {url: "https://example.com/"}) { secret } }`,
			`mutation { deleteWebhookEndpoint(id: "x") { endpoint { id } } }`} {
			_, errs := s.postAs(t, tok, q, nil)
			if len(errs) == 0 || errs[0].Extensions.Code != "FORBIDDEN" {
				t.Fatalf("%s as non-admin: %v", q, errs)
			}
		}
	}
}

// TestWebhooksOneDelivererAcrossInstances runs two servers on one
// PostgreSQL database, both writing: the endpoint gets every event once, in
// position order, from one deliverer at a time; when the server that
// delivers stops, the other takes over where it left off.
func TestWebhooksOneDelivererAcrossInstances(t *testing.T) {
	t.Parallel()
	url := dbtest.URL(t, "postgres")
	flags := []string{"--webhook-allow-private", "--webhook-min-backoff", "20ms", "--webhook-max-backoff", "200ms"}
	a, b := newHome(t, flags...), newHome(t, flags...)
	a.db, b.db = url, url
	sa, sb := a.start(), b.start()
	rcv := newReceiver(t)
	rcv.set(func(r *receiver) { r.delay = 20 * time.Millisecond })

	var created struct {
		CreateWebhookEndpoint struct {
			Secret   string
			Endpoint endpointView
		}
	}
	sa.must(t, createEndpoint, map[string]any{"in": map[string]any{"url": rcv.srv.URL, "types": []string{"task_updated"}}}, &created)
	// Failing at first, so both servers have found the endpoint (each looks
	// every 2 s) while its first event is still pending: without the lease
	// both would deliver it.
	rcv.set(func(r *receiver) { r.secret = created.CreateWebhookEndpoint.Secret; r.failing = true })

	var ids []string
	for i := range 10 {
		s := sa
		if i%2 == 1 {
			s = sb
		}
		id := s.createTask(t, map[string]any{"title": fmt.Sprintf("shared %d", i)})
		s.must(t, `mutation($id: ID!) { updateTask(taskId: $id, input: {description: "seen"}) { task { id } } }`, map[string]any{"id": id}, nil)
		ids = append(ids, id)
	}
	want := positions(t, sa, ids, "task_updated")
	time.Sleep(3 * time.Second)
	rcv.set(func(r *receiver) { r.failing = false })
	eventually(t, 30*time.Second, func() string {
		acc, _, _ := rcv.snapshot()
		return inOrderCovering(acc, want)
	})

	// One deliverer while both run: every event once, in order.
	before, _, _ := rcv.snapshot()
	if !slices.Equal(before, want) {
		t.Fatalf("accepted %v before the stop, want each of %v once, in order", before, want)
	}
	// Whichever server delivered stops cleanly (releasing its lease); the
	// other one delivers the events written after.
	sa.stop(t, 20*time.Second)
	more := sb.createTask(t, map[string]any{"title": "after failover"})
	sb.must(t, `mutation($id: ID!) { updateTask(taskId: $id, input: {description: "seen"}) { task { id } } }`, map[string]any{"id": more}, nil)
	want = positions(t, sb, append(ids, more), "task_updated")
	eventually(t, 30*time.Second, func() string {
		acc, _, _ := rcv.snapshot()
		return inOrderCovering(acc, want)
	})
	acc, _, bad := rcv.snapshot()
	if bad != 0 || rcv.overlaps() != 0 {
		t.Fatalf("%d badly signed, %d overlapping requests: more than one deliverer", bad, rcv.overlaps())
	}
	// Delivery is at least once: across the handover the event in flight
	// when the deliverer stopped may come again, once, and nothing else.
	after := acc[len(before):]
	if len(after) > 0 && after[0] == before[len(before)-1] {
		after = after[1:]
	}
	if rest := want[len(before):]; !slices.Equal(after, rest) {
		t.Fatalf("accepted %v, want %v then each of %v once, in order", acc, before, rest)
	}
}
