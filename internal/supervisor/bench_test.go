package supervisor

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// reportPercentiles adds p50 and p99 of ds (in ms) to the benchmark.
func reportPercentiles(b *testing.B, ds []time.Duration, name string) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		return float64(ds[min(len(ds)-1, int(q*float64(len(ds))))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), name+"-p50-ms")
	b.ReportMetric(at(0.99), name+"-p99-ms")
}

// BenchmarkStartPod compares StartPod→RUNNING with the floor: a bare fork/exec
// of the same plugin with the go-plugin handshake and one Start call.
func BenchmarkStartPod(b *testing.B) {
	b.Run("floor", func(b *testing.B) {
		var ds []time.Duration
		for b.Loop() {
			t0 := time.Now()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envTestPlugin+"=1", "GORACE=atexit_sleep_ms=0")
			client := plugin.NewClient(podapi.NewClientConfig(cmd, hclogger(quietLogger())))
			rt, err := podapi.Dispense(client)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := rt.Start(context.Background(), podapi.StartRequest{TaskID: "x", Host: nopHost{}}); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(t0))
			b.StopTimer()
			client.Kill()
			b.StartTimer()
		}
		reportPercentiles(b, ds, "start")
	})
	b.Run("supervisor", func(b *testing.B) {
		bd := setup(b, nil)
		var ds []time.Duration
		for b.Loop() {
			task := newTask("", ipa.RestartPolicy{})
			t0 := time.Now()
			if started, err := bd.sup.StartPod(context.Background(), task, ipa.TriggerManual, ""); err != nil || !started {
				b.Fatal(started, err)
			}
			ds = append(ds, time.Since(t0))
			b.StopTimer()
			_ = bd.sup.StopPod(context.Background(), task.ID, "bench")
			b.StartTimer()
		}
		reportPercentiles(b, ds, "start")
	})
}

// BenchmarkCrashDetection measures kill -9 → pod_crashed recorded.
func BenchmarkCrashDetection(b *testing.B) {
	bd := setup(b, nil)
	var ds []time.Duration
	var n atomic.Int64
	for b.Loop() {
		b.StopTimer()
		task := newTask("", ipa.RestartPolicy{})
		st := mustStart(b, bd.sup, task)
		n.Add(1)
		b.StartTimer()
		t0 := time.Now()
		if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		ev := bd.rec.wait(b, task.ID, ipa.EventPodCrashed, 1)
		_ = ev
		bd.rec.mu.Lock()
		var at time.Time
		for i, e := range bd.rec.events {
			if e.TaskID == task.ID && e.Type == ipa.EventPodCrashed {
				at = bd.rec.at[i]
			}
		}
		bd.rec.mu.Unlock()
		ds = append(ds, at.Sub(t0))
	}
	reportPercentiles(b, ds, "detect")
}
