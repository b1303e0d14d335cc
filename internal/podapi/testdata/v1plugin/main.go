// Command v1plugin is a runtime plugin as it was built before protocol
// version 2: it offers go-plugin protocol version 1 only and has no
// self-description. Tests build it to prove a newer server still runs it
// (and never calls what version 1 does not have). It runs the demo walk.
package main

import (
	"context"
	"errors"

	"github.com/hashicorp/go-plugin"

	"github.com/ipa-dev/ipa/internal/podapi"
	"github.com/ipa-dev/ipa/plugins/demo"
)

// v1 hides the demo's Describe: a version 1 plugin had none, and a call to
// it would fail loudly.
type v1 struct{ rt *demo.Runtime }

func (v v1) Start(ctx context.Context, r podapi.StartRequest) (podapi.StartResponse, error) {
	return v.rt.Start(ctx, r)
}
func (v v1) Attach(ctx context.Context, r podapi.AttachRequest) (podapi.AttachResponse, error) {
	return v.rt.Attach(ctx, r)
}
func (v v1) State(ctx context.Context, r podapi.StateRequest) (podapi.StateResponse, error) {
	return v.rt.State(ctx, r)
}
func (v v1) Stop(ctx context.Context, r podapi.StopRequest) (podapi.StopResponse, error) {
	return v.rt.Stop(ctx, r)
}
func (v v1) Health(ctx context.Context, r podapi.HealthRequest) (podapi.HealthResponse, error) {
	return v.rt.Health(ctx, r)
}
func (v v1) Describe(context.Context, podapi.DescribeRequest) (podapi.DescribeResponse, error) {
	return podapi.DescribeResponse{}, errors.New("a version 1 plugin was asked to describe itself")
}

func main() {
	// What podapi.Serve did before versioned plugin sets: one plugin set
	// under the handshake's protocol version (1).
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: podapi.Handshake,
		Plugins:         map[string]plugin.Plugin{podapi.PluginName: &podapi.RuntimePlugin{Impl: v1{demo.New()}, Version: 1}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          podapi.Logger(),
	})
}
