package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ipa-dev/ipa/internal/loadtest"
)

// BenchmarkSeveralInstancesGlobalFeed: the global feed's end-to-end
// delivery with writers on three instances. A, B and C each serve 20
// subscribers of `events` while 16 HTTP clients, spread over the three,
// create tasks at a steady pace (one every 25 ms each, about 640 a second in
// all). Every subscriber must receive exactly the events the database holds
// after the start, in position order: no gap, no duplicate, whichever
// instance wrote them. Latency (receive time minus occurredAt, one clock) is
// reported apart for events written through the subscriber's own instance
// (the baseline: the commit reaches its feed in-process) and through another
// one (the commit arrives as a PostgreSQL notice).
//
//	IPA_REQUIRE_POSTGRES=1 go test -run '^$' -bench 'SeveralInstancesGlobalFeed' -benchtime 1x ./cmd/ipa/
func BenchmarkSeveralInstancesGlobalFeed(b *testing.B) {
	const (
		subsPer = 20
		writers = 16
		pace    = 25 * time.Millisecond
		window  = 4 * time.Second
	)
	c := newCluster(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	servers := []*server{c.start("A"), c.start("B"), c.start("C")}
	names := []string{"A", "B", "C"}

	head := headPosition(ctx, b, c.db)
	const feed = `subscription($p: String) { events(afterPosition: $p) { position occurredAt data } }`
	type sub struct {
		*feedSub
		instance string
	}
	var subs []sub
	defer func() {
		for _, s := range subs {
			s.close()
		}
	}()
	// A warm-up task, written before the measured ones: each subscription's
	// first message is its task_created, which proves the feed is live.
	if _, err := benchCreate(ctx, servers[0], "warm-up"); err != nil {
		b.Fatal(err)
	}
	for i, s := range servers {
		got, err := dialMany(ctx, s, subsPer, feed, map[string]any{"p": strconv.FormatInt(head, 10)}, func(raw []byte) error {
			if t := string(loadtest.Field(raw, "title")); t != "warm-up" {
				return fmt.Errorf("first message: %.300s", raw)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, g := range got {
			subs = append(subs, sub{g, names[i]})
		}
	}
	start := headPosition(ctx, b, c.db)

	b.ResetTimer()
	// Readers: each subscriber reads until the end marker, which is written
	// after every measured write.
	type result struct {
		same, other []time.Duration
		positions   []int64
		err         error
	}
	results := make([]result, len(subs))
	var readers sync.WaitGroup
	for i, s := range subs {
		readers.Go(func() {
			r := &results[i]
			for {
				raw, err := s.next(ctx)
				if err != nil {
					r.err = err
					return
				}
				d, err := latency(raw, time.Now())
				if err != nil {
					r.err = err
					return
				}
				pos, err := strconv.ParseInt(string(loadtest.Field(raw, "position")), 10, 64)
				if err != nil {
					r.err = fmt.Errorf("position in %.300s: %w", raw, err)
					return
				}
				if pos <= start {
					continue // the warm-up
				}
				r.positions = append(r.positions, pos)
				title := string(loadtest.Field(raw, "title"))
				if title == "end" {
					return
				}
				if title == s.instance {
					r.same = append(r.same, d)
				} else {
					r.other = append(r.other, d)
				}
			}
		})
	}
	// Writers: client w writes through instance w%3, titled with its name.
	var wg sync.WaitGroup
	writeErr := make(chan error, writers)
	end := time.Now().Add(window)
	for w := range writers {
		s, name := servers[w%len(servers)], names[w%len(servers)]
		wg.Go(func() {
			tick := time.NewTicker(pace)
			defer tick.Stop()
			for time.Now().Before(end) {
				<-tick.C
				if _, err := benchCreate(ctx, s, name); err != nil {
					writeErr <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(writeErr)
	if err := <-writeErr; err != nil {
		b.Fatal(err)
	}
	if _, err := benchCreate(ctx, servers[0], "end"); err != nil {
		b.Fatal(err)
	}

	readers.Wait()
	b.StopTimer()
	want := positionsAfter(ctx, b, c.db, start)
	var same, other []time.Duration
	for i, r := range results {
		if r.err != nil {
			b.Fatalf("subscriber %d on %s: %v", i, subs[i].instance, r.err)
		}
		if !slices.Equal(r.positions, want) {
			b.Fatalf("subscriber %d on %s: got %d events, want the %d the database holds, in order (first difference at %d)",
				i, subs[i].instance, len(r.positions), len(want), firstDifference(r.positions, want))
		}
		same = append(same, r.same...)
		other = append(other, r.other...)
	}
	b.Logf("%d events through 3 instances, %d subscribers (20 per instance), every one received all, in order", len(want)-1, len(subs))
	b.Logf("written through the subscriber's own instance: %d deliveries, %s", len(same), percentiles(same))
	b.Logf("written through another instance: %d deliveries, %s", len(other), percentiles(other))
	reportPercentiles(b, "same-instance", same)
	reportPercentiles(b, "other-instance", other)
	b.ReportMetric(float64(len(want)-1), "events")
}

// headPosition reads the global position counter straight from the database.
func headPosition(ctx context.Context, b *testing.B, db string) int64 {
	b.Helper()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	var last int64
	if err := conn.QueryRow(ctx, `SELECT last FROM positions WHERE id = 1`).Scan(&last); err != nil {
		b.Fatal(err)
	}
	return last
}

// positionsAfter lists the positions of the events committed after pos.
func positionsAfter(ctx context.Context, b *testing.B, db string, pos int64) []int64 {
	b.Helper()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT position FROM events WHERE position > $1 ORDER BY position`, pos)
	if err != nil {
		b.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(out) == 0 {
		b.Fatalf("events after %d: %d, %v", pos, len(out), err)
	}
	return out
}

func firstDifference(a, b []int64) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
