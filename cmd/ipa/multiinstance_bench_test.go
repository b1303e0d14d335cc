package main

// Benchmarks of several `ipa serve` on one PostgreSQL database. Each starts
// its own throwaway cluster and real servers, so one iteration is the whole
// measurement: run them with -benchtime 1x, alone, without -race:
//
//	IPA_REQUIRE_POSTGRES=1 go test -run '^$' -bench 'SeveralInstances' -benchtime 1x ./cmd/ipa/
//
// The figures are reported as custom metrics (ns/op means nothing here).

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// benchPods is how many pods each latency benchmark measures.
const benchPods = 20

// BenchmarkSeveralInstancesTakeover: A owns 20 auto-restart pods and is
// killed with SIGKILL; B and C take them over. Reported per pod, from the
// kill: pod_lost recorded elsewhere, and pod_started elsewhere (the pod
// RUNNING on its new owner).
func BenchmarkSeveralInstancesTakeover(b *testing.B) {
	c := newCluster(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	a, other := c.start("A"), c.start("B")
	c.start("C")
	ids := make([]string, benchPods)
	for i := range ids {
		ids[i] = a.createTask(b, autoRestartTask(fmt.Sprintf("takeover %d", i)))
	}
	for _, id := range ids {
		a.waitPod(b, id, "RUNNING", "ACTIVE", 0, 60*time.Second)
	}
	time.Sleep(testHeartbeat) // a heartbeat after the last start, as in steady state
	b.ResetTimer()
	killed := time.Now()
	a.kill(syscall.SIGKILL)
	<-a.exited
	c.waitRunningElsewhere(ctx, ids, "A", 60*time.Second)
	b.StopTimer()
	var started, lost []time.Duration
	for _, id := range ids {
		evs := other.events(b, id)
		st := ofType(evs, "pod_started")
		lo := ofType(evs, "pod_lost")
		if len(st) == 0 || len(lo) == 0 {
			b.Fatalf("task %s: %d pod_started, %d pod_lost", id, len(st), len(lo))
		}
		at, err1 := time.Parse(time.RFC3339Nano, st[len(st)-1].OccurredAt)
		la, err2 := time.Parse(time.RFC3339Nano, lo[len(lo)-1].OccurredAt)
		if err1 != nil || err2 != nil {
			b.Fatal(err1, err2)
		}
		started = append(started, at.Sub(killed))
		lost = append(lost, la.Sub(killed))
	}
	b.Logf("kill -9 → pod_lost elsewhere, %d pods, TTL %s, heartbeat %s: %s", benchPods, testTTL, testHeartbeat, percentiles(lost))
	b.Logf("kill -9 → pod_started elsewhere, %d pods, TTL %s, heartbeat %s: %s", benchPods, testTTL, testHeartbeat, percentiles(started))
	reportPercentiles(b, "lost", lost)
	reportPercentiles(b, "running", started)
}

// BenchmarkSeveralInstancesCancel: cancelTask of a pod that A owns, sent
// through B (another instance) and, as the baseline, through A itself;
// measured from the request until the plugin process is gone.
func BenchmarkSeveralInstancesCancel(b *testing.B) {
	c := newCluster(b)
	a, other := c.start("A"), c.start("B")
	measure := func(via *server, label string) []time.Duration {
		ids := make([]string, benchPods)
		for i := range ids {
			ids[i] = a.createTask(b, autoRestartTask(fmt.Sprintf("%s %d", label, i)))
		}
		pids := make([]int, benchPods)
		for i, id := range ids {
			pids[i] = a.waitPod(b, id, "RUNNING", "ACTIVE", 0, 60*time.Second).Pod.PID
		}
		var lat []time.Duration
		for i, id := range ids {
			began := time.Now()
			via.must(b, `mutation($id: ID!) { cancelTask(taskId: $id, reason: "measure") { task { id } } }`, map[string]any{"id": id}, nil)
			for ourAlive(pids[i], c.homes["A"].tag) && procState(pids[i]) != "Z" {
				if time.Since(began) > 30*time.Second {
					b.Fatalf("plugin %d of %s still alive", pids[i], id)
				}
				time.Sleep(time.Millisecond)
			}
			lat = append(lat, time.Since(began))
		}
		b.Logf("cancelTask %s → plugin gone, %d pods: %s", label, benchPods, percentiles(lat))
		return lat
	}
	b.ResetTimer()
	reportPercentiles(b, "via-other", measure(other, "through another instance (B)"))
	reportPercentiles(b, "via-owner", measure(a, "through the owner (A)"))
}

// BenchmarkSeveralInstancesCreateTask: createTask throughput with 16
// clients spread over 1, 2 and 3 instances on one database, beside the
// floor of raw pgx single-row INSERTs (16 connections) on the same cluster.
// Each window also reports where the machine's CPU went, per create: the
// servers (all three run throughout), the load clients (this process) and
// the rest of the machine (PostgreSQL, nearly all of it), and PostgreSQL's
// WAL flushes per create — how many creates share one commit.
func BenchmarkSeveralInstancesCreateTask(b *testing.B) {
	const clients = 16
	const window = 5 * time.Second
	c := newCluster(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	servers := []*server{c.start("A"), c.start("B"), c.start("C")}
	cfg, err := pgxpool.ParseConfig(c.db)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = clients
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	// rate runs op from 16 clients for the window and returns ops/s and
	// what the window cost.
	rate := func(op func(client int) error) (float64, usage) {
		var n atomic.Int64
		var wg sync.WaitGroup
		var failed atomic.Value
		before := sampleUsage(ctx, b, pool, servers)
		began := time.Now()
		end := began.Add(window)
		waits := sampleLockWaits(ctx, pool, end)
		for i := range clients {
			wg.Go(func() {
				for time.Now().Before(end) {
					if err := op(i); err != nil {
						failed.CompareAndSwap(nil, err)
						return
					}
					n.Add(1)
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(began)
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		lockWaits := <-waits
		used := sampleUsage(ctx, b, pool, servers).since(before, elapsed, n.Load())
		used.lockWaits = lockWaits
		return float64(n.Load()) / elapsed.Seconds(), used
	}
	b.ResetTimer()
	for k := 1; k <= len(servers); k++ {
		set := servers[:k]
		r, used := rate(func(client int) error {
			_, errs, err := set[client%k].post(ctx, `mutation { createTask(input: {title: "throughput"}) { task { id } } }`, nil)
			if err == nil && len(errs) > 0 {
				err = fmt.Errorf("createTask: %v", errs)
			}
			return err
		})
		b.Logf("createTask, %d clients through %d instance(s): %.0f tasks/s; %s", clients, k, r, used)
		b.ReportMetric(r, fmt.Sprintf("tasks/s-%dinst", k))
		b.ReportMetric(used.walSyncsPerOp, fmt.Sprintf("walsyncs/op-%dinst", k))
		b.ReportMetric(used.lockWaits, fmt.Sprintf("lockwaiters-%dinst", k))
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE bench_floor (id bigserial PRIMARY KEY, title text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		b.Fatal(err)
	}
	floor, used := rate(func(int) error {
		_, err := pool.Exec(ctx, `INSERT INTO bench_floor (title) VALUES ($1)`, "floor")
		return err
	})
	b.Logf("floor: raw pgx single-row INSERT, %d clients: %.0f rows/s; %s", clients, floor, used)
	b.ReportMetric(floor, "rows/s-pgx-floor")
}

// usage is the CPU time the machine, the servers and this process (the load
// clients) have used so far, and PostgreSQL's WAL counters.
type usage struct {
	machine, servers, clients time.Duration
	walSyncs, walRecords      int64

	// Set by since: per operation, and the machine's busy share.
	busy                                float64
	serverPerOp, clientPerOp, restPerOp time.Duration
	walSyncsPerOp, walRecordsPerOp      float64
	lockWaits                           float64 // backends waiting for a lock, on average over the window
}

// sampleLockWaits counts, every 5 ms until end, the PostgreSQL backends
// waiting for a lock (the hot counter rows above all), and sends the
// average: how much of the time writers queue on each other.
func sampleLockWaits(ctx context.Context, pool *pgxpool.Pool, end time.Time) <-chan float64 {
	out := make(chan float64, 1)
	go func() {
		var sum, n int
		for time.Now().Before(end) {
			var waiting int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'`).Scan(&waiting); err == nil {
				sum += waiting
				n++
			}
			time.Sleep(5 * time.Millisecond)
		}
		out <- float64(sum) / float64(max(n, 1))
	}()
	return out
}

// usageSettle lets PostgreSQL's backends flush their statistics (they do at
// most once a second) before pg_stat_wal is read.
const usageSettle = 2 * time.Second

func sampleUsage(ctx context.Context, b *testing.B, pool *pgxpool.Pool, servers []*server) usage {
	b.Helper()
	time.Sleep(usageSettle)
	u := usage{machine: machineBusy(), clients: procCPU(os.Getpid())}
	for _, s := range servers {
		u.servers += procCPU(s.pid())
	}
	if err := pool.QueryRow(ctx, `SELECT wal_sync, wal_records FROM pg_stat_wal`).Scan(&u.walSyncs, &u.walRecords); err != nil {
		b.Fatal(err)
	}
	return u
}

// since returns the window's usage per operation (the settle pause before
// the second sample is idle time and adds only the servers' heartbeats).
func (u usage) since(before usage, elapsed time.Duration, ops int64) usage {
	d := usage{machine: u.machine - before.machine, servers: u.servers - before.servers, clients: u.clients - before.clients,
		walSyncs: u.walSyncs - before.walSyncs, walRecords: u.walRecords - before.walRecords}
	n := max(ops, 1)
	d.busy = d.machine.Seconds() / (elapsed + usageSettle).Seconds() / float64(runtime.NumCPU())
	d.serverPerOp = d.servers / time.Duration(n)
	d.clientPerOp = d.clients / time.Duration(n)
	d.restPerOp = (d.machine - d.servers - d.clients) / time.Duration(n)
	d.walSyncsPerOp = float64(d.walSyncs) / float64(n)
	d.walRecordsPerOp = float64(d.walRecords) / float64(n)
	return d
}

func (u usage) String() string {
	return fmt.Sprintf("machine busy %.0f%%; CPU per op: servers %s, clients %s, rest (PostgreSQL) %s; WAL flushes per op %.3f, WAL records per op %.1f; backends waiting for a lock %.2f on average",
		100*u.busy, u.serverPerOp.Round(time.Microsecond), u.clientPerOp.Round(time.Microsecond), u.restPerOp.Round(time.Microsecond), u.walSyncsPerOp, u.walRecordsPerOp, u.lockWaits)
}

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// machineBusy returns the CPU time all cores have spent not idle since boot.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * clockTick
}

// procCPU returns the user and system CPU time process pid has used.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:])) // state ppid … utime (12th) stime (13th)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * clockTick
}

// percentiles formats p50, p99 and max of d.
func percentiles(d []time.Duration) string {
	s := slices.Clone(d)
	slices.Sort(s)
	return fmt.Sprintf("p50 %s  p99 %s  max %s", quantile(s, 0.50).Round(time.Millisecond), quantile(s, 0.99).Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}

// quantile returns the q-quantile of sorted s (nearest rank).
func quantile(s []time.Duration, q float64) time.Duration {
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func reportPercentiles(b *testing.B, name string, d []time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	b.ReportMetric(float64(quantile(s, 0.50))/float64(time.Millisecond), name+"-p50-ms")
	b.ReportMetric(float64(quantile(s, 0.99))/float64(time.Millisecond), name+"-p99-ms")
}
