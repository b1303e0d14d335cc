package app

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/ipa-dev/ipa/internal/artifact"
	"github.com/ipa-dev/ipa/internal/eventlog"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/runtimehost"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/workspace"
)

// completeOnSuccess is the supervisor's Finished hook: a task whose
// runtime completes it when its work ends well (exec's onSuccess COMPLETE)
// is completed, by the runtime as actor, after its pod_stopped. The pod has
// ended, so nothing is left to stop; a task closed meanwhile, or with open
// children (the store refuses to close it), stays as it is.
func completeOnSuccess(st *store.Store, w *eventlog.Writer, runtimes []ipa.Runtime, log *slog.Logger) func(context.Context, string) {
	completes := map[string]func([]byte) bool{}
	for _, rt := range runtimes {
		if rt.CompletesOnSuccess != nil {
			completes[rt.Name] = rt.CompletesOnSuccess
		}
	}
	if len(completes) == 0 {
		return nil
	}
	return func(ctx context.Context, taskID string) {
		t, err := st.GetTask(ctx, taskID)
		if err != nil || t.Status.Closed() {
			return
		}
		if f := completes[t.Runtime]; f == nil || !f(t.RuntimeConfig) {
			return
		}
		_, _, err = w.Append(ctx, eventlog.Append{TaskID: taskID, Actor: runtimehost.Actor(t.Runtime), Decide: func(cur *ipa.Task) ([]ipa.NewEvent, error) {
			if err := ipa.ClosedTaskError(cur.Status); err != nil {
				return nil, err
			}
			return []ipa.NewEvent{{Type: ipa.EventTaskCompleted, Data: ipa.TaskCompletedData{Phase: cur.Phase}}}, nil
		}})
		if err != nil {
			log.Warn("task not completed on success", slog.String("task_id", taskID), slog.Any("error", err))
			return
		}
		log.Info("task completed on success", slog.String("task_id", taskID), slog.String("runtime", t.Runtime))
	}
}

// sweepWorkspaces removes, at start, the workspaces of tasks deleted or
// pruned while this server did not run (or by `ipa prune`). A task the
// store cannot answer for keeps its workspace.
func sweepWorkspaces(ctx context.Context, ws *workspace.Dirs, arts *artifact.Store, st *store.Store, log *slog.Logger) {
	exists := func(ctx context.Context, id string) (bool, error) {
		_, err := st.GetTask(ctx, id)
		if ipa.ErrorCode(err) == ipa.ENOTFOUND {
			return false, nil
		}
		return err == nil, err
	}
	n, err := ws.Sweep(ctx, exists)
	if err != nil {
		log.Warn("workspaces not swept", slog.Any("error", err))
	}
	m, err := arts.Sweep(ctx, exists)
	if err != nil {
		log.Warn("artifacts not swept", slog.Any("error", err))
	}
	if n+m > 0 {
		log.Info("workspaces and artifacts of removed tasks swept", slog.Int("workspaces", n), slog.Int("artifacts", m))
	}
}

// stagingDir is where an exec command leaves its artifacts: a directory
// of its task's workspace (plugins/exec.ArtifactsDir).
func stagingDir(ws *workspace.Dirs) func(string) string {
	return func(taskID string) string {
		p := ws.Path(taskID)
		if p == "" {
			return ""
		}
		return filepath.Join(p, artifact.StagingDir)
	}
}

// recordArtifact appends an artifact event, whatever the task's status
// (a command's files are kept even when its task was closed meanwhile).
func recordArtifact(w *eventlog.Writer) artifact.Recorder {
	return func(ctx context.Context, taskID, actor, typ string, data any) error {
		_, _, err := w.Append(ctx, eventlog.Append{TaskID: taskID, Actor: actor, Decide: func(*ipa.Task) ([]ipa.NewEvent, error) {
			return []ipa.NewEvent{{Type: typ, Data: data}}, nil
		}})
		return err
	}
}
