package supervisor

import (
	"context"
	"log/slog"
	"syscall"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Pausing a pod stops the processes of its plugin's process group, all but
// the plugin itself: SIGSTOP to the whole group at once (so no process can
// fork past a scan of the group), then SIGCONT to the plugin alone. The
// work stops (an exec command and everything it started, in its sandbox or
// not), while the plugin keeps answering the host: its health checks pass,
// its host-silence watch hears the host, and the pod keeps its lease, so a
// paused pod is never taken for a hung or lost one. A process the work
// moved to a process group of its own is not paused.
//
// PAUSED is recorded (pod_paused, pod_resumed). After a server crash the
// processes are still stopped and the reattached pod stays PAUSED. Stopping
// or restarting a paused pod resumes it first, so it can end cleanly; a
// clean shutdown stops it like any other pod.

// PausePod pauses the task's running pod. ipa.ErrPodNotRunning when no pod
// runs; a paused pod is left as it is.
func (s *Supervisor) PausePod(ctx context.Context, taskID string) error {
	p, err := s.lockPod(ctx, taskID, false)
	if err != nil {
		return err
	}
	if p == nil {
		return ipa.ErrPodNotRunning
	}
	defer p.unlock()
	p.mu.Lock()
	r, state := p.run, p.state
	p.mu.Unlock()
	if r == nil || (state != ipa.PodRunning && state != ipa.PodPaused) || !r.proc.alive() {
		return ipa.ErrPodNotRunning
	}
	if state == ipa.PodPaused {
		return nil
	}
	pgid := r.proc.pid
	if err := syscall.Kill(-pgid, syscall.SIGSTOP); err != nil {
		return err
	}
	_ = syscall.Kill(r.proc.pid, syscall.SIGCONT)
	p.setState(ipa.PodPaused)
	s.log.Info("pod paused", slog.String("task_id", taskID), slog.Int("pid", r.proc.pid))
	_, err = s.record(context.WithoutCancel(ctx), taskID, ipa.EventPodPaused, ipa.PodPausedData{PID: r.proc.pid}, r.startedEventID)
	return err
}

// ResumePod resumes the task's paused pod. ipa.ErrPodNotRunning when no
// pod runs; a running pod is left as it is.
func (s *Supervisor) ResumePod(ctx context.Context, taskID string) error {
	p, err := s.lockPod(ctx, taskID, false)
	if err != nil {
		return err
	}
	if p == nil {
		return ipa.ErrPodNotRunning
	}
	defer p.unlock()
	p.mu.Lock()
	r, state := p.run, p.state
	p.mu.Unlock()
	if r == nil || (state != ipa.PodRunning && state != ipa.PodPaused) {
		return ipa.ErrPodNotRunning
	}
	if state != ipa.PodPaused {
		return nil
	}
	thaw(r)
	p.setState(ipa.PodRunning)
	s.log.Info("pod resumed", slog.String("task_id", taskID), slog.Int("pid", r.proc.pid))
	_, err = s.record(context.WithoutCancel(ctx), taskID, ipa.EventPodResumed, ipa.PodPausedData{PID: r.proc.pid}, r.startedEventID)
	return err
}

// thaw sends SIGCONT to the run's process group (harmless when nothing in
// it is stopped).
func thaw(r *run) {
	if r != nil && r.proc != nil && r.proc.groupLead {
		_ = syscall.Kill(-r.proc.pid, syscall.SIGCONT)
	}
}
