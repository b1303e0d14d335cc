package supervisor

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// BenchmarkStartPodWarm puts StartPod→RUNNING taking a warm process beside a
// cold StartPod and the bare launch floor (fork/exec of the same plugin,
// go-plugin handshake, one Start), interleaved in one run so the machine's
// noise falls on all three alike. Before each warm start the pool is full
// again (untimed).
func BenchmarkStartPodWarm(b *testing.B) {
	cold := setup(b, nil)
	warm := setup(b, func(c *Config) { c.WarmPods = map[string]int{"test": 2} })
	start := func(s *Supervisor) time.Duration {
		task := newTask("", ipa.RestartPolicy{})
		t0 := time.Now()
		if started, err := s.StartPod(context.Background(), task, ipa.TriggerManual, ""); err != nil || !started {
			b.Fatal(started, err)
		}
		d := time.Since(t0)
		_ = s.StopPod(context.Background(), task.ID, "bench")
		return d
	}
	floor := func() time.Duration {
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
		d := time.Since(t0)
		client.Kill()
		return d
	}
	var ws, cs, fs []time.Duration
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		waitIdle(b, warm.sup, "test", 2)
		b.StartTimer()
		ws = append(ws, start(warm.sup))
		cs = append(cs, start(cold.sup))
		fs = append(fs, floor())
	}
	reportPercentiles(b, ws, "warm")
	reportPercentiles(b, cs, "cold")
	reportPercentiles(b, fs, "floor")
}
