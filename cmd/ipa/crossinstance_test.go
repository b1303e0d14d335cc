package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/ipa-dev/ipa/internal/dbtest"
)

// wsMessage is a graphql-transport-ws message.
type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// subscribe opens a graphql-transport-ws connection to s and starts one
// subscription; every "next" payload's data is sent on the returned channel
// until ctx ends.
func subscribe(t *testing.T, ctx context.Context, s *server, query string) <-chan json.RawMessage {
	t.Helper()
	conn, _, err := websocket.Dial(ctx, strings.Replace(s.url, "http", "ws", 1)+"/graphql",
		&websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn.SetReadLimit(1 << 20)
	t.Cleanup(func() { conn.CloseNow() })
	mustWrite := func(m any) {
		if err := wsjson.Write(ctx, conn, m); err != nil {
			t.Fatalf("ws write: %v", err)
		}
	}
	mustWrite(wsMessage{Type: "connection_init", Payload: json.RawMessage(`{}`)})
	var ack wsMessage
	if err := wsjson.Read(ctx, conn, &ack); err != nil || ack.Type != "connection_ack" {
		t.Fatalf("connection_ack: %v %+v", err, ack)
	}
	payload, _ := json.Marshal(map[string]any{"query": query})
	mustWrite(wsMessage{ID: "1", Type: "subscribe", Payload: payload})
	out := make(chan json.RawMessage, 1024)
	go func() {
		defer close(out)
		for {
			var m wsMessage
			if err := wsjson.Read(ctx, conn, &m); err != nil {
				return
			}
			switch m.Type {
			case "next":
				var p struct {
					Data   json.RawMessage `json:"data"`
					Errors json.RawMessage `json:"errors"`
				}
				_ = json.Unmarshal(m.Payload, &p)
				if len(p.Errors) > 0 {
					t.Errorf("subscription error: %s", p.Errors)
					return
				}
				select {
				case out <- p.Data:
				case <-ctx.Done():
					return
				}
			case "ping":
				_ = wsjson.Write(ctx, conn, wsMessage{Type: "pong"})
			case "error", "complete":
				t.Errorf("subscription ended: %s %s", m.Type, m.Payload)
				return
			}
		}
	}()
	return out
}

// TestCrossInstanceFeeds runs two servers on one PostgreSQL database: a
// subscriber on one must see every event the other commits, exactly once and
// in position order, delivered through LISTEN/NOTIFY.
func TestCrossInstanceFeeds(t *testing.T) {
	url := dbtest.URL(t, "postgres")
	a := newHome(t)
	a.db = url
	b := newHome(t)
	b.db = url
	sa, sb := a.start(), b.start()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	feed := subscribe(t, ctx, sa, `subscription { events(afterPosition: "0") { taskId version position type } }`)
	changed := subscribe(t, ctx, sa, `subscription { taskChanged(filter: {phase: [PLANNING]}) { id phase version } }`)

	// Writers on B only: A's subscribers can hear of them only from B. An
	// odd number of rounds leaves every task in PLANNING: taskChanged sends
	// current views, so under load a brief PLANNING may be coalesced away,
	// but the final one must arrive.
	const writers, rounds = 4, 11
	var wg sync.WaitGroup
	ids := make([]string, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := sb.createTask(t, map[string]any{"title": fmt.Sprintf("cross %d", w)})
			ids[w] = id
			for r := range rounds {
				to := "PLANNING"
				if r%2 == 1 {
					to = "SPEC_CLARIFICATION"
				}
				sb.must(t, `mutation($id: ID!, $to: TaskPhase!) { transitionPhase(taskId: $id, to: $to) { task { id } } }`,
					map[string]any{"id": id, "to": to}, nil)
			}
		}()
	}
	wg.Wait()
	want := writers * (1 + rounds)

	type ev struct {
		TaskID   string `json:"taskId"`
		Version  int    `json:"version"`
		Position string `json:"position"`
	}
	var last int64
	seen := map[string]int{}
	for n := 0; n < want; n++ {
		select {
		case raw, ok := <-feed:
			if !ok {
				t.Fatalf("feed closed after %d of %d events", n, want)
			}
			var d struct{ Events ev }
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatal(err)
			}
			pos, _ := strconv.ParseInt(d.Events.Position, 10, 64)
			if pos <= last {
				t.Fatalf("position %d after %d: not strictly increasing", pos, last)
			}
			last = pos
			if d.Events.Version != seen[d.Events.TaskID]+1 {
				t.Fatalf("task %s: version %d after %d", d.Events.TaskID, d.Events.Version, seen[d.Events.TaskID])
			}
			seen[d.Events.TaskID] = d.Events.Version
		case <-ctx.Done():
			t.Fatalf("only %d of %d events from the other instance arrived", n, want)
		}
	}
	for _, id := range ids {
		if seen[id] != 1+rounds {
			t.Errorf("task %s: saw %d events, want %d", id, seen[id], 1+rounds)
		}
	}
	// taskChanged on A saw B's tasks in PLANNING (views are current, and
	// each task ends there, so at least one per task).
	got := map[string]bool{}
	for len(got) < writers {
		select {
		case raw := <-changed:
			var d struct {
				TaskChanged struct{ ID, Phase string }
			}
			_ = json.Unmarshal(raw, &d)
			if d.TaskChanged.Phase != "PLANNING" {
				t.Fatalf("taskChanged delivered a task in %s despite the filter", d.TaskChanged.Phase)
			}
			got[d.TaskChanged.ID] = true
		case <-ctx.Done():
			t.Fatalf("taskChanged on A saw %d of %d tasks changed on B", len(got), writers)
		}
	}
}
