package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipa-dev/ipa/internal/catalog"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/manager"
	"github.com/ipa-dev/ipa/internal/podapi"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/supervisor"
)

// managerRuntimes adapts the catalog's runtimes to the manager's.
func managerRuntimes(cat *catalog.Catalog) []manager.Runtime {
	rts := cat.Runtimes()
	out := make([]manager.Runtime, len(rts))
	for i, rt := range rts {
		out[i] = manager.Runtime{Name: rt.Name, Description: rt.Description, ValidateConfig: rt.ValidateConfig}
	}
	return out
}

// startPods starts the supervisor, reconciles what the previous server left
// behind (reattach or record pod_lost), and connects it to the manager.
func startPods(ctx context.Context, so *serveOptions, cat *catalog.Catalog, mgr *manager.Manager, st *store.Store, reg prometheus.Registerer, log *slog.Logger) (*supervisor.Supervisor, error) {
	// Absolute, so plugins and leases do not depend on the working directory.
	dataDir, err := filepath.Abs(so.dataDir)
	if err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	sup, err := supervisor.New(supervisor.Config{
		Recorder:      mgr,
		HostFactory:   func(taskID, runtime string) podapi.Host { return newRuntimeHost(mgr, taskID, runtime) },
		Launcher:      supervisor.LauncherFunc(cat.Command),
		DataDir:       dataDir,
		Leases:        leaseStore{st: st, owner: instanceID(so, dataDir)},
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
	started, err := p.sup.StartPod(ctx, supervisor.PodSpec{Task: t, CausationID: causation}, true)
	if errors.Is(err, store.ErrLeaseHeld) {
		// Another server sharing the database runs this pod: as far as the
		// caller is concerned, a pod already runs.
		return false, nil
	}
	return started, err
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

// instanceID names this server as the owner of its pods' leases. It must be
// the same after a restart (to find and reattach its pods) and differ
// between servers sharing a database: by default the host name and the data
// directory, which two servers never share.
func instanceID(so *serveOptions, dataDir string) string {
	if so.instanceID != "" {
		return so.instanceID
	}
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	return host + ":" + dataDir
}

// leaseStore keeps the supervisor's pod leases in the database, one owner
// per pod, so several servers on one PostgreSQL database never run the same
// task's pod twice.
type leaseStore struct {
	st    *store.Store
	owner string
}

func (l leaseStore) Save(ctx context.Context, lease supervisor.Lease) error {
	data, err := json.Marshal(lease)
	if err != nil {
		return err
	}
	return l.st.SaveLease(ctx, l.owner, lease.TaskID, data, time.Now())
}

func (l leaseStore) Delete(ctx context.Context, taskID string) error {
	return l.st.DeleteLease(ctx, l.owner, taskID)
}

func (l leaseStore) List(ctx context.Context) ([]supervisor.Lease, error) {
	rows, err := l.st.ListLeases(ctx, l.owner)
	if err != nil {
		return nil, err
	}
	out := make([]supervisor.Lease, 0, len(rows))
	for _, r := range rows {
		var lease supervisor.Lease
		if err := json.Unmarshal(r, &lease); err != nil {
			return nil, fmt.Errorf("decode pod lease: %w", err)
		}
		out = append(out, lease)
	}
	return out, nil
}
