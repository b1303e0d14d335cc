package main

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSeveralInstancesTakeoverWarm is BenchmarkSeveralInstancesTakeover
// with a warm pool of 10 demo plugins on each survivor (B and C): A owns 20
// auto-restart pods and is killed with SIGKILL. Reported per pod, from the
// kill: pod_lost recorded elsewhere, pod_started elsewhere, and the gap
// between the two (what the pool takes off). Run as the other:
//
//	IPA_REQUIRE_POSTGRES=1 go test -run '^$' -bench 'SeveralInstancesTakeover' -benchtime 1x ./cmd/ipa/
func BenchmarkSeveralInstancesTakeoverWarm(b *testing.B) {
	c := newCluster(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	a := c.start("A")
	other := c.start("B", "--warm-pods", "demo=10")
	third := c.start("C", "--warm-pods", "demo=10")
	ids := make([]string, benchPods)
	for i := range ids {
		ids[i] = a.createTask(b, autoRestartTask(fmt.Sprintf("takeover %d", i)))
	}
	for _, id := range ids {
		a.waitPod(b, id, "RUNNING", "ACTIVE", 0, 60*time.Second)
	}
	waitWarmIdle(b, other, "demo", 10)
	waitWarmIdle(b, third, "demo", 10)
	time.Sleep(testHeartbeat) // a heartbeat after the last start, as in steady state
	b.ResetTimer()
	killed := time.Now()
	a.kill(syscall.SIGKILL)
	<-a.exited
	c.waitRunningElsewhere(ctx, ids, "A", 60*time.Second)
	b.StopTimer()
	var started, lost, gap []time.Duration
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
		gap = append(gap, at.Sub(la))
	}
	b.Logf("kill -9 → pod_lost elsewhere, %d pods, TTL %s, warm pools 2×10: %s", benchPods, testTTL, percentiles(lost))
	b.Logf("kill -9 → pod_started elsewhere: %s", percentiles(started))
	b.Logf("pod_lost → pod_started (back-off 100 ms included): %s", percentiles(gap))
	reportPercentiles(b, "lost", lost)
	reportPercentiles(b, "running", started)
	reportPercentiles(b, "gap", gap)
}
