package supervisor

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// resumeParallelism bounds how many pods Resume starts at once: each start
// is a process launch and a handshake, so a few hundred pods finish in
// seconds without a burst of every plugin at once.
const resumeParallelism = 8

// Resume starts again the pods this server stopped on its last clean
// shutdown (the caller finds them: open tasks whose newest pod_stopped has
// reason server_shutdown and this server's InstanceID). Each start records
// pod_started with trigger "resume"; one that fails is recorded as a crash
// (start_failed) and the task's restart policy applies, as for StartPod. A
// task whose pod runs already, or whose lease another instance holds, is left
// alone. It returns how many pods it started, after every start has ended;
// ctx bounds them.
func (s *Supervisor) Resume(ctx context.Context, tasks []*ipa.Task) int {
	began := time.Now()
	n := ResumeEach(ctx, tasks, s.StartPod, s.log)
	s.log.Info("resume done", slog.Int("candidates", len(tasks)), slog.Int("started", n), slog.Duration("took", time.Since(began)))
	return n
}

// ResumeEach starts the pods of tasks (trigger resume) through start, at
// most resumeParallelism at once, skipping closed tasks; a start that fails
// is logged and left to start's own accounting. It returns how many pods
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
