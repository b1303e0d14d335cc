package httpserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/loadtest"
	"github.com/ipa-dev/ipa/internal/service"
	"github.com/ipa-dev/ipa/internal/store"
)

// Feed benchmarks: real WebSocket clients (coder/websocket, graphql-transport-ws)
// over real sockets against the full server. Run them with
//
//	go test -run '^$' -bench 'DeliveryLatency|CatchUp' -benchtime 1x ./internal/httpserver/

// benchServer is the full stack behind a real socket, for benchmarks.
type benchServer struct {
	store *store.Store
	url   string // http://host:port
	http  *http.Client
}

// benchSetup is the tests' setup (the server as cmd/ipa/ipacli/serve.go assembles
// it, in auto auth mode) with a client pool sized for many writers.
func benchSetup(tb testing.TB, backend string) *benchServer {
	tb.Helper()
	b := setup(tb, backend)
	tr := b.Srv.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &benchServer{store: b.Store, url: b.URL, http: &http.Client{Transport: tr}}
}

// post sends one GraphQL operation and returns its data, or the first error.
func (s *benchServer) post(ctx context.Context, query string, vars map[string]any) (json.RawMessage, error) {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/graphql", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var out struct {
		Data   json.RawMessage `json:"data"`
		Errors []gqlError      `json:"errors"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, raw)
	}
	if len(out.Errors) > 0 {
		return nil, &out.Errors[0]
	}
	return out.Data, nil
}

// createTask creates a task over HTTP and returns its id.
func (s *benchServer) createTask(ctx context.Context, title string) (string, error) {
	data, err := s.post(ctx, `mutation($t: String!) { createTask(input: {title: $t}) { task { id } } }`, map[string]any{"t": title})
	if err != nil {
		return "", err
	}
	var out struct {
		CreateTask struct{ Task struct{ ID string } }
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return "", err
	}
	return out.CreateTask.Task.ID, nil
}

// toggle moves the task one phase over HTTP — from SPEC_CLARIFICATION to
// PLANNING, then back and forth between PLANNING and DEVELOPMENT — trying the
// other way when another client moved it first; *to is left at the next move.
func (s *benchServer) toggle(ctx context.Context, id string, to *string) error {
	for range 10_000 { // one of 16 writers on one task loses most races

		_, err := s.post(ctx, `mutation($id: ID!, $to: TaskPhase!) { transitionPhase(taskId: $id, to: $to) { task { version } } }`,
			map[string]any{"id": id, "to": *to})
		if *to == "DEVELOPMENT" {
			*to = "PLANNING"
		} else {
			*to = "DEVELOPMENT"
		}
		var ge *gqlError
		if err == nil {
			return nil
		}
		if errors.As(err, &ge) && (ge.Reason() == ipa.ReasonInvalidTransition || ge.Reason() == ipa.ReasonVersionConflict) {
			continue
		}
		return err
	}
	return errors.New("toggle: kept losing races")
}

// wsSub is one WebSocket connection carrying one graphql-transport-ws subscription.
type wsSub struct{ conn *websocket.Conn }

// subscribe opens a socket, does connection_init/ack and starts the subscription.
func (s *benchServer) subscribe(ctx context.Context, query string, vars map[string]any) (*wsSub, error) {
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.url, "http")+"/graphql",
		&websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(1 << 20)
	send := func(v any) error {
		raw, _ := json.Marshal(v)
		return conn.Write(ctx, websocket.MessageText, raw)
	}
	if err := send(map[string]any{"type": "connection_init", "payload": map[string]any{}}); err != nil {
		conn.CloseNow()
		return nil, err
	}
	_, raw, err := conn.Read(ctx)
	if err != nil || !bytes.Contains(raw, []byte(`"connection_ack"`)) {
		conn.CloseNow()
		return nil, fmt.Errorf("no connection_ack: %s %v", raw, err)
	}
	if err := send(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": query, "variables": vars}}); err != nil {
		conn.CloseNow()
		return nil, err
	}
	return &wsSub{conn: conn}, nil
}

// next returns the payload of the next "next" message; other message types
// (ping, complete, error) are an error except ping, which is answered.
func (w *wsSub) next(ctx context.Context) ([]byte, error) {
	for {
		_, raw, err := w.conn.Read(ctx)
		if err != nil {
			return nil, err
		}
		switch {
		case bytes.HasPrefix(raw, []byte(`{"payload"`)), bytes.Contains(raw, []byte(`"type":"next"`)):
			return raw, nil
		case bytes.Contains(raw, []byte(`"type":"ping"`)):
			_ = w.conn.Write(ctx, websocket.MessageText, []byte(`{"type":"pong"}`))
		default:
			return nil, fmt.Errorf("unexpected message: %s", raw)
		}
	}
}

func (w *wsSub) close() { _ = w.conn.Close(websocket.StatusNormalClosure, "") }

const taskEventsSub = `subscription($id: ID!, $v: Int) { taskEvents(taskId: $id, afterVersion: $v) { version occurredAt } }`

// BenchmarkDeliveryLatency measures how long a committed event takes to reach
// WebSocket subscribers of its task while 16 HTTP clients write: latency =
// receive time − the event's occurredAt (taken just before the commit; one
// machine, one clock). Reports p50/p99/max over every delivery in ms.
func BenchmarkDeliveryLatency(b *testing.B) {
	loadtest.RaiseFileLimit(b, 4096)
	for _, backend := range dbtest.Backends {
		for _, mode := range []string{"burst", "paced"} {
			for _, n := range []int{1, 100, 1000} {
				b.Run(fmt.Sprintf("%s/%s/subs=%d", backend, mode, n), func(b *testing.B) {
					benchDeliveryLatency(b, backend, n, mode == "paced")
				})
			}
		}
	}
}

// In burst mode all 16 writers write to the watched task as fast as they
// can: an overload test, whose latency is mostly backlog. In paced mode the
// watched task changes at a steady 20 events/s while the 16 writers keep the
// server busy with other tasks: the latency a watcher sees on a busy server.
func benchDeliveryLatency(b *testing.B, backend string, subscribers int, paced bool) {
	const writers = 16
	togglesPerRound := 400
	if paced {
		togglesPerRound = 100
	}
	s := benchSetup(b, backend)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hot, err := s.createTask(ctx, "hot")
	require.NoError(b, err)
	to := "PLANNING"
	require.NoError(b, s.toggle(ctx, hot, &to)) // version 2

	// Subscribe from version 1, so each subscription's first message (version
	// 2) proves it is live before any measured write starts.
	subs := make([]*wsSub, subscribers)
	{
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		var mu sync.Mutex
		var firstErr error
		for i := range subs {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				sub, err := s.subscribe(ctx, taskEventsSub, map[string]any{"id": hot, "v": 1})
				if err == nil {
					var raw []byte
					if raw, err = sub.next(ctx); err == nil && loadtest.FieldInt(raw, "version") != 2 {
						err = fmt.Errorf("first message: %s", raw)
					}
				}
				if err != nil {
					mu.Lock()
					firstErr = cmp(firstErr, err)
					mu.Unlock()
					return
				}
				subs[i] = sub
			})
		}
		wg.Wait()
		require.NoError(b, firstErr)
		defer func() {
			for _, sub := range subs {
				sub.close()
			}
		}()
	}

	var all []time.Duration
	version := int64(2)
	b.ResetTimer()
	for range b.N {
		// The writes' final version is known up front: every toggle succeeds once.
		final := version + int64(togglesPerRound)
		lat := make([][]time.Duration, subscribers)
		var readers sync.WaitGroup
		readErr := make(chan error, subscribers)
		for i, sub := range subs {
			readers.Go(func() {
				for {
					raw, err := sub.next(ctx)
					now := time.Now()
					if err != nil {
						readErr <- err
						return
					}
					at, err := time.Parse(time.RFC3339Nano, string(loadtest.Field(raw, "occurredAt")))
					if err != nil {
						readErr <- fmt.Errorf("occurredAt in %s: %w", raw, err)
						return
					}
					lat[i] = append(lat[i], now.Sub(at))
					if loadtest.FieldInt(raw, "version") >= final {
						return
					}
				}
			})
		}
		var wg sync.WaitGroup
		var claimed sync.Mutex
		left := togglesPerRound
		writeErr := make(chan error, writers+1)
		if paced {
			left = 0 // the writers below only create other tasks
			wg.Go(func() {
				to := "PLANNING"
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for range togglesPerRound {
					<-tick.C
					if err := s.toggle(ctx, hot, &to); err != nil {
						writeErr <- err
						return
					}
				}
			})
		}
		hotDone := make(chan struct{})
		for w := range writers {
			if paced {
				wg.Go(func() {
					for {
						select {
						case <-hotDone:
							return
						default:
						}
						if _, err := s.createTask(ctx, "other"); err != nil {
							writeErr <- err
							return
						}
					}
				})
				continue
			}
			wg.Go(func() {
				to := "PLANNING"
				for j := 0; ; j++ {
					claimed.Lock()
					mine := left > 0
					left--
					claimed.Unlock()
					if !mine {
						return
					}
					if err := s.toggle(ctx, hot, &to); err != nil {
						writeErr <- err
						return
					}
					if (w+j)%4 == 0 { // and other tasks are being created meanwhile
						if _, err := s.createTask(ctx, "other"); err != nil {
							writeErr <- err
							return
						}
					}
				}
			})
		}
		readers.Wait()
		close(hotDone)
		wg.Wait()
		close(writeErr)
		require.NoError(b, <-writeErr)
		close(readErr)
		require.NoError(b, <-readErr)
		for _, l := range lat {
			require.Len(b, l, togglesPerRound)
			all = append(all, l...)
		}
		version = final
	}
	b.StopTimer()
	slices.Sort(all)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(all[len(all)/2]), "p50-ms")
	b.ReportMetric(ms(all[len(all)*99/100]), "p99-ms")
	b.ReportMetric(ms(all[len(all)-1]), "max-ms")
	b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "deliveries/s")
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// catchUpEvents is how many events the catch-up task holds.
const catchUpEvents = 100_000

// BenchmarkCatchUp reads a 100,000-event task from the start over WebSocket
// and, side by side, straight from store.ReadEvents in pages of 1000: the
// floor the feed is measured against. Over the socket: taskEvents(afterVersion:
// 0), one event per message, and the batched streams taskEventsStream and
// eventsStream(afterPosition: "0") with batchSize 500, every field. The floor
// for eventsStream is the global read (ReadEvents without a task), for the
// task feeds the task's read.
func BenchmarkCatchUp(b *testing.B) {
	const batch = 500
	for _, backend := range dbtest.Backends {
		b.Run(backend, func(b *testing.B) {
			s := benchSetup(b, backend)
			ctx := context.Background()
			id := seedTask(b, s.store, catchUpEvents)
			var wsTime, taskStreamTime, streamTime, storeTime, globalStoreTime time.Duration
			readStore := func(taskID string) time.Duration {
				start := time.Now()
				n := 0
				for after := int64(0); ; {
					page, err := s.store.ReadEvents(ctx, ipa.EventQuery{TaskID: taskID, After: after, Limit: 1000})
					require.NoError(b, err)
					n += len(page)
					if len(page) < 1000 {
						break
					}
					after = page[len(page)-1].Version
					if taskID == "" {
						after = page[len(page)-1].Position
					}
				}
				require.Equal(b, catchUpEvents, n)
				return time.Since(start)
			}
			// readBatches reads batched messages until the last event,
			// checking that the field sequence runs 1, 2, 3… with no gap.
			readBatches := func(query string, vars map[string]any, seqField string) time.Duration {
				start := time.Now()
				sub, err := s.subscribe(ctx, query, vars)
				require.NoError(b, err)
				defer sub.close()
				want := int64(1)
				for want <= catchUpEvents {
					raw, err := sub.next(ctx)
					require.NoError(b, err)
					n := 0
					for _, v := range loadtest.FieldInts(raw, seqField) {
						if v != want {
							b.Fatalf("got %s %d, want %d", seqField, v, want)
						}
						want++
						n++
					}
					if n < 1 || n > batch {
						b.Fatalf("a batch of %d", n)
					}
				}
				return time.Since(start)
			}
			b.ResetTimer()
			for range b.N {
				storeTime += readStore(id)
				globalStoreTime += readStore("")

				start := time.Now()
				sub, err := s.subscribe(ctx, `subscription($id: ID!) { taskEvents(taskId: $id, afterVersion: 0) { `+apptest.EventFields+` causationId } }`,
					map[string]any{"id": id})
				require.NoError(b, err)
				want := int64(1)
				for want <= catchUpEvents {
					raw, err := sub.next(ctx)
					require.NoError(b, err)
					if v := loadtest.FieldInt(raw, "version"); v != want {
						b.Fatalf("got version %d, want %d", v, want)
					}
					want++
				}
				wsTime += time.Since(start)
				sub.close()

				taskStreamTime += readBatches(`subscription($id: ID!, $n: Int) { taskEventsStream(taskId: $id, afterVersion: 0, batchSize: $n) { `+apptest.EventFields+` causationId } }`,
					map[string]any{"id": id, "n": batch}, "version")
				streamTime += readBatches(`subscription($n: Int) { eventsStream(afterPosition: "0", batchSize: $n) { `+apptest.EventFields+` causationId } }`,
					map[string]any{"n": batch}, "position")
			}
			b.StopTimer()
			rate := func(d time.Duration) float64 { return float64(catchUpEvents*b.N) / d.Seconds() }
			b.ReportMetric(rate(storeTime), "store-events/s")
			b.ReportMetric(rate(wsTime), "ws-events/s")
			b.ReportMetric(rate(storeTime)/rate(wsTime), "x-floor")
			b.ReportMetric(rate(taskStreamTime), "taskstream-events/s")
			b.ReportMetric(rate(storeTime)/rate(taskStreamTime), "taskstream-x-floor")
			b.ReportMetric(rate(globalStoreTime), "global-store-events/s")
			b.ReportMetric(rate(streamTime), "stream-events/s")
			b.ReportMetric(rate(globalStoreTime)/rate(streamTime), "stream-x-floor")
		})
	}
}

// seedTask creates a task with n events straight through the store, a
// thousand events per transaction, and returns its id.
func seedTask(tb testing.TB, st *store.Store, n int) string {
	tb.Helper()
	ctx := context.Background()
	res, err := st.CreateTask(ctx, ipa.CreateTaskRequest{
		TaskID: uuid.Must(uuid.NewV7()).String(), Created: ipa.TaskCreatedData{Title: "long", Runtime: service.DefaultRuntime, RestartPolicy: ipa.DefaultRestartPolicy()},
		Actor: "bench", Now: time.Now(),
	})
	require.NoError(tb, err)
	id := res.Task.ID
	for left := n - 1; left > 0; {
		batch := min(left, 1000)
		_, err := st.Append(ctx, ipa.AppendRequest{
			TaskID: id, ExpectedVersion: ipa.AnyVersion, Actor: "bench", Now: time.Now(),
			Decide: func(cur *ipa.Task) ([]ipa.NewEvent, error) {
				out := make([]ipa.NewEvent, batch)
				from := cur.Phase
				for i := range out {
					to := ipa.PhaseDevelopment
					if from == ipa.PhaseDevelopment {
						to = ipa.PhasePlanning
					}
					out[i] = ipa.NewEvent{Type: ipa.EventPhaseChanged, Data: ipa.PhaseChangedData{From: from, To: to}}
					from = to
				}
				return out, nil
			},
		})
		require.NoError(tb, err)
		left -= batch
	}
	return id
}
