package main

// Live-feed benchmarks against a real `ipa serve` process (the harness's
// binary, its own database), with every load client — subscribers, writers,
// the raw store read — in this process, so that the server's figures are what
// a deployment would see: no client goroutine shares its scheduler, heap or
// garbage collector. Run them one at a time, without -race:
//
//	go test -run '^$' -bench 'FeedsDelivery' -benchtime 1x ./cmd/ipa/
//	go test -run '^$' -bench 'FeedsIdle' -benchtime 1x ./cmd/ipa/
//	go test -run '^$' -bench 'FeedsCatchUp' -benchtime 1x ./cmd/ipa/
//
// Latency is the receive time in this process minus the event's occurredAt,
// which the server takes just before the commit: one machine, one clock.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/loadtest"
	"github.com/ipa-dev/ipa/internal/pgtest"
	"github.com/ipa-dev/ipa/internal/service"
	"github.com/ipa-dev/ipa/internal/store"
)

var feedBackends = []string{"sqlite", "postgres"}

// feedHome is a fresh home on backend (PostgreSQL: a throwaway database).
func feedHome(b *testing.B, backend string) *home {
	h := newHome(b)
	if backend == "postgres" {
		h.db = pgtest.Start(b)
	}
	return h
}

// feedSub is one WebSocket connection carrying one graphql-transport-ws
// subscription.
type feedSub struct{ conn *websocket.Conn }

func dialFeed(ctx context.Context, s *server, query string, vars map[string]any) (*feedSub, error) {
	conn, _, err := websocket.Dial(ctx, strings.Replace(s.url, "http", "ws", 1)+"/graphql",
		&websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(4 << 20)
	send := func(v any) error {
		raw, _ := json.Marshal(v)
		return conn.Write(ctx, websocket.MessageText, raw)
	}
	if err := send(map[string]any{"type": "connection_init", "payload": map[string]any{}}); err != nil {
		conn.CloseNow()
		return nil, err
	}
	if _, raw, err := conn.Read(ctx); err != nil || !bytes.Contains(raw, []byte(`"connection_ack"`)) {
		conn.CloseNow()
		return nil, fmt.Errorf("no connection_ack: %s %v", raw, err)
	}
	if err := send(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": query, "variables": vars}}); err != nil {
		conn.CloseNow()
		return nil, err
	}
	return &feedSub{conn: conn}, nil
}

// next returns the next "next" message, answering pings on the way.
func (f *feedSub) next(ctx context.Context) ([]byte, error) {
	for {
		_, raw, err := f.conn.Read(ctx)
		if err != nil {
			return nil, err
		}
		switch {
		case bytes.Contains(raw, []byte(`"type":"next"`)):
			return raw, nil
		case bytes.Contains(raw, []byte(`"type":"ping"`)):
			_ = f.conn.Write(ctx, websocket.MessageText, []byte(`{"type":"pong"}`))
		default:
			return nil, fmt.Errorf("unexpected message: %.300s", raw)
		}
	}
}

func (f *feedSub) close() { _ = f.conn.CloseNow() }

// dialMany opens n subscriptions, 64 at a time, each live once its first
// message has arrived (check inspects it).
func dialMany(ctx context.Context, s *server, n int, query string, vars map[string]any, check func([]byte) error) ([]*feedSub, error) {
	subs := make([]*feedSub, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var mu sync.Mutex
	var first error
	for i := range subs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sub, err := dialFeed(ctx, s, query, vars)
			if err == nil {
				var raw []byte
				if raw, err = sub.next(ctx); err == nil {
					err = check(raw)
				}
				if err != nil {
					sub.close()
				}
			}
			if err != nil {
				mu.Lock()
				first = cmp.Or(first, err)
				mu.Unlock()
				return
			}
			subs[i] = sub
		})
	}
	wg.Wait()
	if first != nil {
		for _, sub := range subs {
			if sub != nil {
				sub.close()
			}
		}
		return nil, first
	}
	return subs, nil
}

// latency is the time from the event's occurredAt to now.
func latency(raw []byte, now time.Time) (time.Duration, error) {
	at, err := time.Parse(time.RFC3339Nano, string(loadtest.Field(raw, "occurredAt")))
	if err != nil {
		return 0, fmt.Errorf("occurredAt in %.300s: %w", raw, err)
	}
	return now.Sub(at), nil
}

// benchPost sends one operation and returns its first error as a Go error.
func benchPost(ctx context.Context, s *server, query string, vars map[string]any) (json.RawMessage, error) {
	data, errs, err := s.post(ctx, query, vars)
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, benchErr(errs[0])
	}
	return data, nil
}

type benchErr gqlError

func (e benchErr) Error() string { return gqlError(e).String() }

func benchCreate(ctx context.Context, s *server, title string) (string, error) {
	data, err := benchPost(ctx, s, `mutation($t: String!) { createTask(input: {title: $t}) { task { id } } }`, map[string]any{"t": title})
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

// benchToggle moves the task one phase — SPEC_CLARIFICATION to PLANNING,
// then between PLANNING and DEVELOPMENT — trying the other way when another
// writer moved it first; *to is left at the next move.
func benchToggle(ctx context.Context, s *server, id string, to *string) error {
	for range 10_000 { // one of 16 writers on one task loses most races
		_, err := benchPost(ctx, s, `mutation($id: ID!, $to: TaskPhase!) { transitionPhase(taskId: $id, to: $to) { task { version } } }`,
			map[string]any{"id": id, "to": *to})
		if *to == "DEVELOPMENT" {
			*to = "PLANNING"
		} else {
			*to = "DEVELOPMENT"
		}
		if err == nil {
			return nil
		}
		var be benchErr
		if errors.As(err, &be) && (be.Extensions.Reason == ipa.ReasonInvalidTransition || be.Extensions.Reason == ipa.ReasonVersionConflict) {
			continue
		}
		return err
	}
	return errors.New("toggle: kept losing races")
}

const feedTaskEvents = `subscription($id: ID!, $v: Int) { taskEvents(taskId: $id, afterVersion: $v) { version occurredAt } }`

// BenchmarkFeedsDelivery: subscribers of one task's taskEvents while 16 HTTP
// writers work. Burst: the 16 writers move the watched task as fast as they
// can (400 moves), creating other tasks on every fourth write — an overload
// test, whose latency is mostly backlog. Paced: the watched task moves at 20
// events/s (100 moves) while the 16 writers create other tasks without
// pause. subs=1 is the baseline of the same run.
func BenchmarkFeedsDelivery(b *testing.B) {
	loadtest.RaiseFileLimit(b, 4096)
	for _, backend := range feedBackends {
		for _, mode := range []string{"paced", "burst"} {
			for _, n := range []int{1, 1000} {
				b.Run(fmt.Sprintf("%s/%s/subs=%d", backend, mode, n), func(b *testing.B) {
					benchFeedsDelivery(b, backend, n, mode == "paced")
				})
			}
		}
	}
}

func benchFeedsDelivery(b *testing.B, backend string, subscribers int, paced bool) {
	const writers = 16
	moves := 400
	if paced {
		moves = 100
	}
	s := feedHome(b, backend).start()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hot, err := benchCreate(ctx, s, "hot")
	if err != nil {
		b.Fatal(err)
	}
	to := "PLANNING"
	if err := benchToggle(ctx, s, hot, &to); err != nil { // version 2
		b.Fatal(err)
	}
	// From version 1: each subscription's first message (version 2) proves
	// it is live before any measured write.
	subs, err := dialMany(ctx, s, subscribers, feedTaskEvents, map[string]any{"id": hot, "v": 1}, func(raw []byte) error {
		if loadtest.FieldInt(raw, "version") != 2 {
			return fmt.Errorf("first message: %.300s", raw)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		for _, sub := range subs {
			sub.close()
		}
	}()

	var all []time.Duration
	version := int64(2)
	b.ResetTimer()
	for range b.N {
		final := version + int64(moves) // every move succeeds once
		lat := make([][]time.Duration, subscribers)
		var readers sync.WaitGroup
		readErr := make(chan error, subscribers)
		for i, sub := range subs {
			readers.Go(func() {
				for {
					raw, err := sub.next(ctx)
					if err != nil {
						readErr <- err
						return
					}
					d, err := latency(raw, time.Now())
					if err != nil {
						readErr <- err
						return
					}
					lat[i] = append(lat[i], d)
					if loadtest.FieldInt(raw, "version") >= final {
						return
					}
				}
			})
		}
		var wg sync.WaitGroup
		writeErr := make(chan error, writers+1)
		hotDone := make(chan struct{})
		var claimed sync.Mutex
		left := moves
		if paced {
			wg.Go(func() { // the only writer of to during the round
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for range moves {
					<-tick.C
					if err := benchToggle(ctx, s, hot, &to); err != nil {
						writeErr <- err
						return
					}
				}
			})
		}
		for w := range writers {
			if paced {
				wg.Go(func() {
					for {
						select {
						case <-hotDone:
							return
						default:
						}
						if _, err := benchCreate(ctx, s, "other"); err != nil {
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
					if err := benchToggle(ctx, s, hot, &to); err != nil {
						writeErr <- err
						return
					}
					if (w+j)%4 == 0 {
						if _, err := benchCreate(ctx, s, "other"); err != nil {
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
		if err := <-writeErr; err != nil {
			b.Fatal(err)
		}
		close(readErr)
		if err := <-readErr; err != nil {
			b.Fatal(err)
		}
		for i, l := range lat {
			if len(l) != moves {
				b.Fatalf("subscriber %d got %d events, want %d", i, len(l), moves)
			}
			all = append(all, l...)
		}
		version = final
	}
	b.StopTimer()
	loadtest.ReportLatency(b, all)
	b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkFeedsIdle: 10,000 WebSocket subscribers of one task's taskEvents
// (each on its own connection), idle. Reports the server's resident memory
// per subscriber — VmRSS of the server process after every subscription is
// live, minus VmRSS before the first connection — and the delivery of five
// events, one at a time, to all of them.
func BenchmarkFeedsIdle(b *testing.B) {
	const subscribers = 10_000
	loadtest.RaiseFileLimit(b, subscribers+1000)
	for _, backend := range feedBackends {
		b.Run(backend, func(b *testing.B) {
			s := feedHome(b, backend).start()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			idle, err := benchCreate(ctx, s, "idle")
			if err != nil {
				b.Fatal(err)
			}
			// Warm the server up with a few subscriptions that come and go,
			// so that "before" includes what the first one allocates once.
			warm, err := dialMany(ctx, s, 64, feedTaskEvents, map[string]any{"id": idle, "v": 0}, func([]byte) error { return nil })
			if err != nil {
				b.Fatal(err)
			}
			for _, sub := range warm {
				sub.close()
			}
			time.Sleep(time.Second)
			gauges := []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes"}
			mBefore := serverMetrics(b, s, gauges...)
			before, err := vmRSSKiB(s.pid())
			if err != nil {
				b.Fatal(err)
			}
			began := time.Now()
			subs, err := dialMany(ctx, s, subscribers, feedTaskEvents, map[string]any{"id": idle, "v": 0}, func(raw []byte) error {
				if loadtest.FieldInt(raw, "version") != 1 {
					return fmt.Errorf("first message: %.300s", raw)
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				for _, sub := range subs {
					sub.close()
				}
			}()
			connectTime := time.Since(began)
			time.Sleep(2 * time.Second) // let the connections settle
			after, err := vmRSSKiB(s.pid())
			if err != nil {
				b.Fatal(err)
			}
			mAfter := serverMetrics(b, s, gauges...)
			per := func(name string) float64 { return (mAfter[name] - mBefore[name]) / subscribers }

			const events = 5
			to := "PLANNING"
			version := int64(1)
			var all []time.Duration
			b.ResetTimer()
			for range b.N {
				for range events {
					version++
					want := version
					lat := make([]time.Duration, subscribers)
					var readers sync.WaitGroup
					readErr := make(chan error, subscribers)
					for i, sub := range subs {
						readers.Go(func() {
							raw, err := sub.next(ctx)
							if err == nil && loadtest.FieldInt(raw, "version") != want {
								err = fmt.Errorf("got %.200s, want version %d", raw, want)
							}
							if err == nil {
								lat[i], err = latency(raw, time.Now())
							}
							if err != nil {
								readErr <- err
							}
						})
					}
					if err := benchToggle(ctx, s, idle, &to); err != nil {
						b.Fatal(err)
					}
					readers.Wait()
					close(readErr)
					if err := <-readErr; err != nil {
						b.Fatal(err)
					}
					all = append(all, lat...)
					time.Sleep(500 * time.Millisecond)
				}
			}
			b.StopTimer()
			loadtest.ReportLatency(b, all)
			b.ReportMetric(float64(before)/1024, "rss-before-MiB")
			b.ReportMetric(float64(after)/1024, "rss-after-MiB")
			b.ReportMetric(float64(after-before)/subscribers, "KiB/sub")
			b.ReportMetric(connectTime.Seconds(), "connect-s")
			b.ReportMetric(per("go_goroutines"), "goroutines/sub")
			b.ReportMetric(per("go_memstats_heap_inuse_bytes")/1024, "heap-KiB/sub")
			b.ReportMetric(per("go_memstats_stack_inuse_bytes")/1024, "stack-KiB/sub")
		})
	}
}

// serverMetrics reads the named gauges from the server's /metrics.
func serverMetrics(b *testing.B, s *server, names ...string) map[string]float64 {
	resp, err := s.client.Get(s.url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("/metrics: HTTP %d %v", resp.StatusCode, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		for _, n := range names {
			if v, ok := strings.CutPrefix(line, n+" "); ok {
				out[n], _ = strconv.ParseFloat(v, 64)
			}
		}
	}
	return out
}

// feedCatchUpEvents is how many events the catch-up store holds.
const feedCatchUpEvents = 100_000

// BenchmarkFeedsCatchUp: a store with one task of 100,000 events (seeded
// through the store before the server starts), read from the start through
// eventsStream(afterPosition: "0", batchSize: 500) and
// taskEventsStream(afterVersion: 0, batchSize: 500) over a WebSocket, with
// every event field; beside it, the floor: store.ReadEvents in pages of 1000
// in this process (global order for eventsStream, the task's for
// taskEventsStream), straight from the same database.
func BenchmarkFeedsCatchUp(b *testing.B) {
	const batch = 500
	const fields = `id taskId version position type data actorId correlationId causationId occurredAt`
	for _, backend := range feedBackends {
		b.Run(backend, func(b *testing.B) {
			h := feedHome(b, backend)
			ctx := context.Background()
			st, err := store.Open(ctx, h.db, store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			id := seedFeedTask(b, st, feedCatchUpEvents)
			readStore := func(taskID string) time.Duration {
				start := time.Now()
				n := 0
				for after := int64(0); ; {
					page, err := st.ReadEvents(ctx, ipa.EventQuery{TaskID: taskID, After: after, Limit: 1000})
					if err != nil {
						b.Fatal(err)
					}
					n += len(page)
					if len(page) < 1000 {
						break
					}
					after = page[len(page)-1].Version
					if taskID == "" {
						after = page[len(page)-1].Position
					}
				}
				if n != feedCatchUpEvents {
					b.Fatalf("store read %d events", n)
				}
				return time.Since(start)
			}
			s := h.start()
			// readBatches reads until the last event, checking that seqField
			// runs 1, 2, 3… with no gap and batches of 1..batch.
			readBatches := func(query string, vars map[string]any, seqField string) time.Duration {
				start := time.Now()
				sub, err := dialFeed(ctx, s, query, vars)
				if err != nil {
					b.Fatal(err)
				}
				defer sub.close()
				want := int64(1)
				for want <= feedCatchUpEvents {
					raw, err := sub.next(ctx)
					if err != nil {
						b.Fatal(err)
					}
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
			var storeTime, globalStoreTime, taskStreamTime, streamTime time.Duration
			b.ResetTimer()
			for range b.N {
				globalStoreTime += readStore("")
				streamTime += readBatches(`subscription($n: Int) { eventsStream(afterPosition: "0", batchSize: $n) { `+fields+` } }`,
					map[string]any{"n": batch}, "position")
				storeTime += readStore(id)
				taskStreamTime += readBatches(`subscription($id: ID!, $n: Int) { taskEventsStream(taskId: $id, afterVersion: 0, batchSize: $n) { `+fields+` } }`,
					map[string]any{"id": id, "n": batch}, "version")
			}
			b.StopTimer()
			_ = st.Close()
			rate := func(d time.Duration) float64 { return float64(feedCatchUpEvents*b.N) / d.Seconds() }
			b.ReportMetric(rate(globalStoreTime), "global-store-events/s")
			b.ReportMetric(rate(streamTime), "stream-events/s")
			b.ReportMetric(rate(globalStoreTime)/rate(streamTime), "stream-x-floor")
			b.ReportMetric(rate(storeTime), "store-events/s")
			b.ReportMetric(rate(taskStreamTime), "taskstream-events/s")
			b.ReportMetric(rate(storeTime)/rate(taskStreamTime), "taskstream-x-floor")
		})
	}
}

// seedFeedTask creates a task with n events straight through the store, a
// thousand events per transaction, and returns its id.
func seedFeedTask(b *testing.B, st *store.Store, n int) string {
	ctx := context.Background()
	res, err := st.CreateTask(ctx, ipa.CreateTaskRequest{
		TaskID: uuid.Must(uuid.NewV7()).String(), Created: ipa.TaskCreatedData{Title: "long", Runtime: service.DefaultRuntime, RestartPolicy: ipa.DefaultRestartPolicy()},
		Actor: "bench", Now: time.Now(),
	})
	if err != nil {
		b.Fatal(err)
	}
	id := res.Task.ID
	for left := n - 1; left > 0; {
		size := min(left, 1000)
		_, err := st.Append(ctx, ipa.AppendRequest{
			TaskID: id, ExpectedVersion: ipa.AnyVersion, Actor: "bench", Now: time.Now(),
			Decide: func(cur *ipa.Task) ([]ipa.NewEvent, error) {
				out := make([]ipa.NewEvent, size)
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
		if err != nil {
			b.Fatal(err)
		}
		left -= size
	}
	return id
}
