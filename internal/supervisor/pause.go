package supervisor

import (
	"context"
	"errors"
	"log/slog"
	"syscall"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// Pausing a pod asks its runtime to pause its own work (protocol version 3
// Runtime.Pause, pod.Pauser). A runtime that cannot stops the processes
// of its plugin's process group instead, all but the plugin itself: SIGSTOP to the whole group at once (so no process can
// fork past a scan of the group), then SIGCONT to the plugin alone. The
// work stops (an exec command and everything it started, in its sandbox or
// not), while the plugin keeps answering the host: its health checks pass,
// its host-silence watch hears the host, and the pod keeps its lease, so a
// paused pod is never taken for a hung or lost one. A process the work
// moved to a process group of its own is not paused.
//
// PAUSED is recorded (pod_paused, pod_resumed). After a server crash the
// processes are still stopped and the reattached pod stays PAUSED. A clean
// shutdown leaves a paused pod as it is too (leavePaused): stopping it would
// throw its work away, and starting it again would run it unpaused. Stopping
// or restarting a paused pod resumes it first, so it can end cleanly.

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
	how := "runtime"
	if err := podapi.Pause(ctx, r.conn.rt); err != nil {
		if !errors.Is(err, podapi.ErrUnsupported) {
			s.log.Warn("runtime pause failed; pausing with signals", slog.String("task_id", taskID), slog.Any("error", err))
		}
		how = "signals"
		pgid := r.proc.pid
		if err := syscall.Kill(-pgid, syscall.SIGSTOP); err != nil {
			return err
		}
		_ = syscall.Kill(r.proc.pid, syscall.SIGCONT)
	}
	p.setState(ipa.PodPaused)
	s.log.Info("pod paused", slog.String("task_id", taskID), slog.Int("pid", r.proc.pid), slog.String("by", how))
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
	// Whichever way it was paused (not known after a reattach), both
	// resumes: SIGCONT is harmless to running processes, and Resume to a
	// runtime that did not pause itself does nothing or is unsupported.
	thaw(r)
	if err := podapi.Resume(ctx, r.conn.rt); err != nil && !errors.Is(err, podapi.ErrUnsupported) {
		s.log.Warn("runtime resume failed", slog.String("task_id", taskID), slog.Any("error", err))
	}
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

// leavePaused lets a paused pod's plugin outlive this server's clean
// shutdown, as it outlives a crash: no pod_stopped, the lease kept, the
// connection dropped without asking the plugin to exit. The next server of
// this instance reattaches it (Reconcile) and it stays PAUSED, the work
// where it stopped. The plugin waits for that server no longer than its
// orphan grace. Reports whether it left the pod (false: the pod is not
// paused, or its plugin is gone, and is stopped as any other). Operation
// lock held.
func (s *Supervisor) leavePaused(p *pod, r *run) bool {
	p.mu.Lock()
	state := p.state
	p.mu.Unlock()
	if r == nil || state != ipa.PodPaused || !r.proc.alive() {
		return false
	}
	r.stopping.Store(true) // its exit, if it comes now, is not a crash of ours
	r.stopPoll()
	<-r.pollDone
	r.conn.abandon()
	p.mu.Lock()
	if p.run == r {
		p.run = nil
		p.live = podapi.StateResponse{}
	}
	p.mu.Unlock()
	s.m.running.Dec()
	s.log.Info("paused pod left running", slog.String("task_id", p.taskID), slog.Int("pid", r.proc.pid), slog.String("decision", "leave_paused"))
	return true
}
