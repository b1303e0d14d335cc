// Command v1plugin is a runtime plugin as it was built before protocol
// version 2: it offers go-plugin protocol version 1 only and has no
// self-description. Tests build it to prove a newer server still runs it
// (and never calls what version 1 does not have). Its work: ask for
// PLANNING, report {"planned": true}, wait to be stopped.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"sync"

	"github.com/hashicorp/go-plugin"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

type v1 struct {
	mu      sync.Mutex
	task    string
	planned bool
	stop    chan struct{}
	done    chan struct{}
}

func (v *v1) Start(_ context.Context, r podapi.StartRequest) (podapi.StartResponse, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.task != "" {
		return podapi.StartResponse{}, ipa.Errorf(ipa.ECONFLICT, ipa.ReasonInvalidArgument, "already started")
	}
	v.task = r.TaskID
	go func() {
		defer close(v.done)
		_, err := r.Host.RequestPhase(context.Background(), podapi.PhaseRequest{To: string(ipa.PhasePlanning)})
		v.mu.Lock()
		v.planned = err == nil
		v.mu.Unlock()
		<-v.stop
	}()
	return podapi.StartResponse{}, nil
}

func (v *v1) Attach(_ context.Context, r podapi.AttachRequest) (podapi.AttachResponse, error) {
	return podapi.AttachResponse{TaskID: r.TaskID}, nil
}

func (v *v1) State(context.Context, podapi.StateRequest) (podapi.StateResponse, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	live, _ := json.Marshal(map[string]bool{"planned": v.planned})
	running := v.task != ""
	select {
	case <-v.done:
		running = false
	default:
	}
	return podapi.StateResponse{TaskID: v.task, Running: running, Live: live}, nil
}

func (v *v1) Stop(ctx context.Context, _ podapi.StopRequest) (podapi.StopResponse, error) {
	v.mu.Lock()
	started := v.task != ""
	select {
	case <-v.stop:
	default:
		close(v.stop)
	}
	v.mu.Unlock()
	if started {
		select {
		case <-v.done:
		case <-ctx.Done():
		}
	}
	return podapi.StopResponse{}, nil
}

func (v *v1) Health(context.Context, podapi.HealthRequest) (podapi.HealthResponse, error) {
	return podapi.HealthResponse{Healthy: true}, nil
}

// Describe fails loudly: a version 1 plugin has none, and the host must not
// ask.
func (v *v1) Describe(context.Context, podapi.DescribeRequest) (podapi.DescribeResponse, error) {
	return podapi.DescribeResponse{}, errors.New("a version 1 plugin was asked to describe itself")
}

func main() {
	// What podapi.Serve did before versioned plugin sets: one plugin set
	// under the handshake's protocol version (1).
	impl := &v1{stop: make(chan struct{}), done: make(chan struct{})}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: podapi.Handshake,
		Plugins:         map[string]plugin.Plugin{podapi.PluginName: &podapi.RuntimePlugin{Impl: impl, Version: 1}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          podapi.Logger(),
	})
}
