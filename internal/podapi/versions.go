package podapi

import (
	"context"

	"github.com/hashicorp/go-plugin"

	pb "github.com/ipa-dev/ipa/internal/podapi/proto"
)

// Protocol versions. The host offers every version from MinProtocolVersion to
// ProtocolVersion in PLUGIN_PROTOCOL_VERSIONS; the plugin answers with the
// newest one it also speaks, in its handshake line. A version only adds to the
// one before it (messages, fields, RPCs); the host never makes a call the
// negotiated version does not have.
//
//	1: Start, Attach, State, Stop, Health; Host: AppendEvent, RequestPhase, Output
//	2: adds Describe (a runtime's description, config schema and example)
//	3: Host: adds Messages, AckMessage, Ask (conversations with a person), ReportUsage,
//	   SaveArtifact; Runtime: adds Pause, Resume (a runtime's own pause)
const (
	MinProtocolVersion = 1
	ProtocolVersion    = 3
)

// VersionedPluginMap is the host's plugin sets, one per protocol version it
// speaks (go-plugin ClientConfig.VersionedPlugins).
func VersionedPluginMap() map[int]plugin.PluginSet {
	m := make(map[int]plugin.PluginSet, ProtocolVersion-MinProtocolVersion+1)
	for v := MinProtocolVersion; v <= ProtocolVersion; v++ {
		m[v] = pluginSet(v)
	}
	return m
}

func pluginSet(version int) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &RuntimePlugin{Version: version}}
}

// servedPluginMap is the plugin side's sets: the same implementation under
// every version, so a plugin built now also runs on an older server.
func servedPluginMap(impl Runtime) map[int]plugin.PluginSet {
	m := make(map[int]plugin.PluginSet, ProtocolVersion-MinProtocolVersion+1)
	for v := MinProtocolVersion; v <= ProtocolVersion; v++ {
		m[v] = plugin.PluginSet{PluginName: &RuntimePlugin{Impl: impl, Version: v}}
	}
	return m
}

// Describer is implemented by a Runtime that describes itself (protocol
// version 2). A Runtime that does not is described by an empty response.
type Describer interface {
	Describe(ctx context.Context, req DescribeRequest) (DescribeResponse, error)
}

// DescribeRequest is empty for now.
type DescribeRequest struct{}

// DescribeResponse is what a runtime says about itself.
type DescribeResponse struct {
	Description   string // for a person; "" when none
	ConfigSchema  []byte // JSON Schema of the runtime config; nil when none
	ExampleConfig []byte // a JSON object valid against ConfigSchema; nil when none
}

// Describe asks a dispensed Runtime about itself. A plugin that negotiated a
// protocol older than 2 is not asked: the answer is empty.
func Describe(ctx context.Context, rt Runtime) (DescribeResponse, error) {
	if d, ok := rt.(Describer); ok {
		return d.Describe(ctx, DescribeRequest{})
	}
	return DescribeResponse{}, nil
}

// NegotiatedVersion is the protocol version a dispensed Runtime speaks with
// its plugin (ProtocolVersion for a Runtime that is not a plugin client).
func NegotiatedVersion(rt Runtime) int {
	if c, ok := rt.(*runtimeClient); ok {
		return c.version
	}
	return ProtocolVersion
}

// Describe is the host side of Runtime.Describe; see the package func.
func (c *runtimeClient) Describe(ctx context.Context, _ DescribeRequest) (DescribeResponse, error) {
	if c.version < 2 {
		return DescribeResponse{}, nil
	}
	cctx, cancel := withDeadline(ctx)
	defer cancel()
	resp, err := c.rpc.Describe(cctx, &pb.DescribeRequest{})
	if err != nil {
		return DescribeResponse{}, c.unavailable(ctx, err)
	}
	return DescribeResponse{
		Description:   resp.GetDescription(),
		ConfigSchema:  resp.GetConfigSchema(),
		ExampleConfig: resp.GetExampleConfig(),
	}, nil
}

// Describe is the plugin side of Runtime.Describe.
func (s *runtimeServer) Describe(ctx context.Context, _ *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	d, ok := s.impl.(Describer)
	if !ok {
		return &pb.DescribeResponse{}, nil
	}
	resp, err := d.Describe(ctx, DescribeRequest{})
	if err != nil {
		return nil, toStatus(err, "")
	}
	return &pb.DescribeResponse{
		Description:   resp.Description,
		ConfigSchema:  resp.ConfigSchema,
		ExampleConfig: resp.ExampleConfig,
	}, nil
}
