package service

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/workspace"
)

// SetWorkspaces makes Workspace answer from ws. Call before serving.
func (s *PodService) SetWorkspaces(ws *workspace.Dirs) { s.ws = ws }

// Workspace returns the size of the task's workspace; ok is false when it
// has none (yet). Requires VIEWER.
func (s *PodService) Workspace(ctx context.Context, taskID string) (sizeBytes int64, ok bool, err error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return 0, false, err
	}
	if s.ws == nil {
		return 0, false, nil
	}
	size, ok, err := s.ws.Size(ctx, taskID)
	if err != nil {
		return 0, false, ipa.Errorf(ipa.EUNAVAILABLE, "", "The workspace could not be measured.")
	}
	return size, ok, nil
}

// PodExit is how a pod's process last ended.
type PodExit struct {
	At         time.Time
	ExitCode   *int
	Signal     string
	DurationMs int64
	Reason     string
}

// LastExit returns how the task's pod last ended, from its newest
// pod_stopped (of a process) or pod_crashed; nil before any. Requires
// VIEWER.
func (s *PodService) LastExit(ctx context.Context, taskID string) (*PodExit, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleViewer); err != nil {
		return nil, err
	}
	evs, err := s.store.ReadEvents(ctx, ipa.EventQuery{TaskID: taskID, Types: []string{ipa.EventPodStopped, ipa.EventPodCrashed}, Limit: 20, Newest: true})
	if err != nil {
		return nil, err
	}
	for _, e := range evs {
		if e.Type == ipa.EventPodCrashed {
			var d ipa.PodCrashedData
			_ = json.Unmarshal(e.Data, &d)
			return &PodExit{At: e.OccurredAt, ExitCode: d.ExitCode, Signal: d.Signal, DurationMs: d.UptimeMs, Reason: d.Reason}, nil
		}
		var d ipa.PodStoppedData
		_ = json.Unmarshal(e.Data, &d)
		if d.PID == 0 && d.ExitCode == nil {
			continue // a stop with no process (during a restart's back-off)
		}
		return &PodExit{At: e.OccurredAt, ExitCode: d.ExitCode, Signal: d.Signal, DurationMs: d.UptimeMs, Reason: d.Reason}, nil
	}
	return nil, nil
}

// PausePod stops the work of the task's running pod (its process group
// but the plugin itself) until ResumePod: PodState PAUSED, pod_paused.
// Requires OPERATOR. Returns ENOTFOUND, ECONFLICT (closed; NOT_RUNNING when
// no pod runs). Pausing a paused pod changes nothing.
func (s *PodService) PausePod(ctx context.Context, taskID string) (*ipa.Task, error) {
	return s.pauseOrResume(ctx, taskID, s.pods.PausePod)
}

// ResumePod continues the work of the task's paused pod: PodState RUNNING,
// pod_resumed. Requires OPERATOR. Errors are PausePod's.
func (s *PodService) ResumePod(ctx context.Context, taskID string) (*ipa.Task, error) {
	return s.pauseOrResume(ctx, taskID, s.pods.ResumePod)
}

func (s *PodService) pauseOrResume(ctx context.Context, taskID string, do func(context.Context, string) error) (*ipa.Task, error) {
	if _, err := ipa.RequireRole(ctx, ipa.RoleOperator); err != nil {
		return nil, err
	}
	if _, err := openTask(ctx, s.store, taskID, nil); err != nil {
		return nil, err
	}
	if err := do(ctx, taskID); err != nil {
		if errors.Is(err, ipa.ErrPodNotRunning) {
			return nil, ipa.ErrPodNotRunning
		}
		return nil, err
	}
	return s.store.GetTask(ctx, taskID)
}
