package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/manager"
	"github.com/ipa-dev/ipa/internal/podapi"
	"github.com/ipa-dev/ipa/internal/supervisor"
	"github.com/ipa-dev/ipa/plugins/builtin"
)

// runtimes lists the runtimes this server offers.
func runtimes(so *serveOptions) []manager.Runtime {
	var out []manager.Runtime
	for _, rt := range builtin.All() {
		if rt.Name == "exec" && !so.enableExec {
			continue
		}
		out = append(out, manager.Runtime{Name: rt.Name, Description: rt.Description, ValidateConfig: rt.ValidateConfig})
	}
	return out
}

// startPods starts the supervisor, reconciles what the previous server left
// behind (reattach or record pod_lost), and connects it to the manager.
func startPods(ctx context.Context, so *serveOptions, mgr *manager.Manager, reg prometheus.Registerer, log *slog.Logger) (*supervisor.Supervisor, error) {
	enabled := map[string]bool{}
	for _, rt := range runtimes(so) {
		enabled[rt.Name] = true
	}
	sup, err := supervisor.New(supervisor.Config{
		Recorder:    mgr,
		HostFactory: func(taskID, runtime string) podapi.Host { return newRuntimeHost(mgr, taskID, runtime) },
		Launcher: supervisor.ExecLauncher{
			Builtin: func(name string) ([]string, bool) {
				if _, ok := builtin.Get(name); ok && enabled[name] {
					return builtin.Args(name), true
				}
				return nil, false
			},
			PluginDir: so.pluginDir,
		},
		DataDir:       filepath.Clean(so.dataDir),
		DefaultPolicy: so.policy,
		Logger:        log,
		Registry:      reg,
	})
	if err != nil {
		return nil, err
	}
	if err := sup.Start(ctx); err != nil {
		return nil, err
	}
	targets, err := mgr.PodTargets(ctx)
	if err != nil {
		_ = sup.Shutdown(ctx)
		return nil, fmt.Errorf("reconcile pods: %w", err)
	}
	rt := make([]supervisor.ReconcileTarget, len(targets))
	for i, t := range targets {
		rt[i] = supervisor.ReconcileTarget{Task: t}
	}
	if err := sup.Reconcile(ctx, rt); err != nil {
		_ = sup.Shutdown(ctx)
		return nil, fmt.Errorf("reconcile pods: %w", err)
	}
	mgr.SetPods(podController{sup})
	return sup, nil
}

// podController adapts the supervisor to the manager's PodController.
type podController struct{ sup *supervisor.Supervisor }

func (p podController) StartPod(ctx context.Context, t *ipa.Task, causation string) (bool, error) {
	return p.sup.StartPod(ctx, supervisor.PodSpec{Task: t, CausationID: causation}, true)
}

func (p podController) StopPod(ctx context.Context, taskID, reason string) error {
	err := p.sup.StopPod(ctx, taskID, reason)
	if errors.Is(err, supervisor.ErrNotRunning) {
		return manager.ErrNotRunning
	}
	return err
}

func (p podController) RestartPod(ctx context.Context, t *ipa.Task) error {
	return p.sup.RestartPod(ctx, supervisor.PodSpec{Task: t})
}

func (p podController) Status(taskID string) manager.PodStatus {
	s := p.sup.Status(taskID)
	return manager.PodStatus{Known: s.Known, State: s.State, PID: s.PID, StartedAt: s.StartedAt,
		Restarts: s.Restarts, NextAttemptAt: s.NextAttemptAt, Live: s.Live}
}

func (p podController) Forget(taskID string) { p.sup.Forget(taskID) }

// runtimeHost is the host service one pod talks to: every call is bound to
// the pod's own task, so a runtime can never write to another task's stream.
type runtimeHost struct {
	mgr       *manager.Manager
	taskID    string
	runtime   string
	causation func(ctx context.Context) string
}

func newRuntimeHost(mgr *manager.Manager, taskID, runtime string) *runtimeHost {
	h := &runtimeHost{mgr: mgr, taskID: taskID, runtime: runtime}
	var (
		mu     sync.Mutex
		cached string
	)
	// The run's pod_started is recorded after the plugin starts, so the
	// cause is looked up on the first call, not when the host is made.
	h.causation = func(ctx context.Context) string {
		mu.Lock()
		defer mu.Unlock()
		if cached == "" {
			cached = mgr.RuntimeCausation(ctx, taskID)
		}
		return cached
	}
	return h
}

func (h *runtimeHost) AppendEvent(ctx context.Context, req podapi.AppendEventRequest) (podapi.AppendEventResponse, error) {
	v, err := h.mgr.RuntimeAppend(ctx, h.taskID, h.runtime, h.causation(ctx), req.Type, req.Data)
	return podapi.AppendEventResponse{Version: v}, err
}

func (h *runtimeHost) RequestPhase(ctx context.Context, req podapi.PhaseRequest) (podapi.PhaseResponse, error) {
	p, err := h.mgr.RuntimeRequestPhase(ctx, h.taskID, h.runtime, h.causation(ctx), ipa.Phase(req.To), req.Note)
	return podapi.PhaseResponse{Phase: string(p)}, err
}

func (h *runtimeHost) Output(ctx context.Context, req podapi.OutputRequest) (podapi.OutputResponse, error) {
	lines := make([]manager.OutputLine, len(req.Lines))
	for i, l := range req.Lines {
		lines[i] = manager.OutputLine{Stream: l.Stream, Text: l.Text}
	}
	return podapi.OutputResponse{}, h.mgr.RuntimeOutput(ctx, h.taskID, h.runtime, h.causation(ctx), lines, req.Dropped)
}
