package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/manager"
	"github.com/ipa-dev/ipa/internal/podapi"
	"github.com/ipa-dev/ipa/internal/store"
	"github.com/ipa-dev/ipa/internal/supervisor"
	"github.com/ipa-dev/ipa/plugins/builtin"
)

// catalog is the set of runtimes a server offers: the built-ins (less exec
// when it is switched off) and the external plugins that passed discovery.
type catalog struct {
	builtins map[string]bool
	external map[string]podapi.ExternalRuntime
	checked  bool // external files must match their allow-listed checksum at launch too
}

// discoverRuntimes builds the catalog. A plugin refused by the allow-list is
// logged and left out; the server still starts with the others.
func discoverRuntimes(so *serveOptions, log *slog.Logger) (*catalog, error) {
	c := &catalog{builtins: map[string]bool{}, external: map[string]podapi.ExternalRuntime{}}
	for _, rt := range builtin.All() {
		if rt.Name != "exec" || so.enableExec {
			c.builtins[rt.Name] = true
		}
	}
	if so.pluginDir == "" {
		return c, nil
	}
	var allow map[string]string
	if so.pluginSHA256File != "" {
		var err error
		if allow, err = readChecksums(so.pluginSHA256File); err != nil {
			return nil, err
		}
		c.checked = true
	}
	found, err := podapi.Discover(so.pluginDir, allow)
	if err != nil {
		log.Warn("plugin refused", "plugin_dir", so.pluginDir, "err", err)
	}
	for _, rt := range found {
		if _, clash := builtin.Get(rt.Name); clash {
			log.Warn("external plugin ignored: a built-in runtime has that name", "runtime", rt.Name, "path", rt.Path)
			continue
		}
		c.external[rt.Name] = rt
		log.Info("external runtime found", "runtime", rt.Name, "path", rt.Path, "sha256", rt.SHA256)
	}
	return c, nil
}

// readChecksums reads an allow-list in sha256sum's format: "<hex>  <name>"
// per line, # comments allowed.
func readChecksums(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--plugin-sha256-file: %w", err)
	}
	allow := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 || len(fields[0]) != 64 {
			return nil, fmt.Errorf("--plugin-sha256-file %s:%d: want \"<sha256 hex>  <file name>\"", path, i+1)
		}
		allow[filepath.Base(strings.TrimPrefix(fields[1], "*"))] = strings.ToLower(fields[0])
	}
	return allow, nil
}

// runtimes lists the catalog for the manager, built-ins first.
func (c *catalog) runtimes() []manager.Runtime {
	var out []manager.Runtime
	for _, rt := range builtin.All() {
		if c.builtins[rt.Name] {
			out = append(out, manager.Runtime{Name: rt.Name, Description: rt.Description, ValidateConfig: rt.ValidateConfig})
		}
	}
	for _, rt := range c.external {
		out = append(out, manager.Runtime{Name: rt.Name, Description: "External runtime plugin " + filepath.Base(rt.Path) + "."})
	}
	return out
}

// command returns how to launch a runtime's plugin: built-ins by
// re-executing this binary, external ones from their discovered path, after
// checking the file still has its allow-listed checksum.
func (c *catalog) command(runtime string) (*exec.Cmd, error) {
	if c.builtins[runtime] {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find own executable: %w", err)
		}
		return exec.Command(exe, builtin.Args(runtime)...), nil
	}
	rt, ok := c.external[runtime]
	if !ok {
		return nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Unknown runtime %q.", runtime)
	}
	if c.checked {
		sum, err := fileSHA256(rt.Path)
		if err != nil || sum != rt.SHA256 {
			return nil, fmt.Errorf("runtime %s: plugin file changed since it was checked", runtime)
		}
	}
	return exec.Command(rt.Path), nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// startPods starts the supervisor, reconciles what the previous server left
// behind (reattach or record pod_lost), and connects it to the manager.
func startPods(ctx context.Context, so *serveOptions, cat *catalog, mgr *manager.Manager, st *store.Store, reg prometheus.Registerer, log *slog.Logger) (*supervisor.Supervisor, error) {
	// Absolute, so plugins and leases do not depend on the working directory.
	dataDir, err := filepath.Abs(so.dataDir)
	if err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	sup, err := supervisor.New(supervisor.Config{
		Recorder:      mgr,
		HostFactory:   func(taskID, runtime string) podapi.Host { return newRuntimeHost(mgr, taskID, runtime) },
		Launcher:      supervisor.LauncherFunc(cat.command),
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
	mgr.SetPods(sup)
	return sup, nil
}

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
