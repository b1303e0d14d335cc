package supervisor

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// resumeParallelism bounds how many pods ResumeEach starts at once: each start
// is a process launch and a handshake, so a few hundred pods finish in
// seconds without a burst of every plugin at once.
const resumeParallelism = 8

// ResumeEach starts again, through start (StartPod, or the scheduler's in
// front of it), the pods this server stopped on its last clean shutdown
// (the caller finds them: open tasks whose newest pod_stopped has reason
// server_shutdown and this server's InstanceID), with trigger "resume", at
// most resumeParallelism at once, skipping closed tasks. A start that fails
// is logged and left to start's own accounting (a crash, start_failed); a
// pod running already, or owned elsewhere, is left alone. It returns how many pods
// started, after every start has ended.
func ResumeEach(ctx context.Context, tasks []*ipa.Task, start func(context.Context, *ipa.Task, string, string) (bool, error), log *slog.Logger) int {
	var started atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, resumeParallelism)
	for _, t := range tasks {
		if t == nil || t.Status.Closed() {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ok, err := start(ctx, t, ipa.TriggerResume, "")
			switch {
			case err != nil:
				log.Warn("pod not resumed", slog.String("task_id", t.ID), slog.String("decision", "resume_failed"), slog.Any("error", err))
			case ok:
				started.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(started.Load())
}
