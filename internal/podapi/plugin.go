package podapi

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/ipa-dev/ipa/internal/podapi/proto"
)

// RuntimePlugin is the go-plugin glue for Runtime: gRPC only. On the plugin
// side Impl is the runtime served; on the host side Impl is unused and
// Dispense returns a Runtime that calls the plugin.
type RuntimePlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Runtime
	// Version is the protocol version this glue speaks (host side: the
	// version negotiated with the plugin; calls it does not have are not
	// made). Zero means ProtocolVersion.
	Version int
}

var _ plugin.GRPCPlugin = (*RuntimePlugin)(nil)

// GRPCServer registers the plugin side (called by go-plugin in the plugin).
func (p *RuntimePlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterRuntimeServer(s, newRuntimeServer(p.Impl, broker))
	return nil
}

// GRPCClient builds the host side (called by go-plugin in the host). ctx ends
// when the plugin client is closed or the plugin process exits.
func (p *RuntimePlugin) GRPCClient(ctx context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	v := p.Version
	if v == 0 {
		v = ProtocolVersion
	}
	return newRuntimeClient(ctx, broker, c, v), nil
}
