package podapi

import (
	"errors"
	"fmt"
	"net"
	"os/exec"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// NewClientConfig is the go-plugin client configuration to launch the plugin
// command cmd: handshake, plugin map, gRPC only, and a process that outlives
// the host (own process group, no parent-death signal; see the package doc).
// The caller may set cmd.Env (e.g. EnvOrphanGrace, EnvLogFile) before.
func NewClientConfig(cmd *exec.Cmd, logger hclog.Logger) *plugin.ClientConfig {
	detach(cmd)
	return &plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: VersionedPluginMap(),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logger,
		GRPCDialOptions:  hostDialOptions(),
	}
}

// ReattachInfo is what the host persists to find a running plugin again
// after it restarted. It marshals to JSON as is.
type ReattachInfo struct {
	Pid             int    `json:"pid"`
	Network         string `json:"network"` // "unix" or "tcp"
	Address         string `json:"address"`
	ProtocolVersion int    `json:"protocolVersion"`
}

// Reattach returns the ReattachInfo of a started client; ok is false before
// the client has started (or for a client not launched by this host).
func Reattach(c *plugin.Client) (info ReattachInfo, ok bool) {
	rc := c.ReattachConfig()
	if rc == nil || rc.Addr == nil {
		return ReattachInfo{}, false
	}
	return ReattachInfo{
		Pid:             rc.Pid,
		Network:         rc.Addr.Network(),
		Address:         rc.Addr.String(),
		ProtocolVersion: rc.ProtocolVersion,
	}, true
}

// NewReattachConfig is the go-plugin client configuration to reconnect to a
// plugin that a previous host process launched. The new client owns the
// process: its Kill stops it. After Dispense, call Runtime.Attach with a new
// Host to re-bind the host service. Returns an error for a malformed info.
func NewReattachConfig(info ReattachInfo, logger hclog.Logger) (*plugin.ClientConfig, error) {
	if info.Pid <= 0 {
		return nil, errors.New("podapi: reattach info has no pid")
	}
	var addr net.Addr
	var err error
	switch info.Network {
	case "unix":
		addr, err = net.ResolveUnixAddr("unix", info.Address)
	case "tcp":
		addr, err = net.ResolveTCPAddr("tcp", info.Address)
	default:
		err = fmt.Errorf("unknown network %q", info.Network)
	}
	if err != nil {
		return nil, fmt.Errorf("podapi: reattach address: %w", err)
	}
	version := info.ProtocolVersion
	if version == 0 {
		version = int(Handshake.ProtocolVersion)
	}
	return &plugin.ClientConfig{
		HandshakeConfig: Handshake,
		// go-plugin uses Plugins (not VersionedPlugins) on reattach: the
		// set of the version negotiated at launch.
		Plugins:         pluginSet(version),
		GRPCDialOptions: hostDialOptions(),
		Reattach: &plugin.ReattachConfig{
			Protocol:        plugin.ProtocolGRPC,
			ProtocolVersion: version,
			Addr:            addr,
			Pid:             info.Pid,
		},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logger,
	}, nil
}

// Dispense connects to a started (or reattached) client and returns its
// Runtime. Returns ErrRuntimeUnavailable (wrapped) when the plugin cannot be
// reached.
func Dispense(c *plugin.Client) (Runtime, error) {
	proto, err := c.Client()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRuntimeUnavailable, err)
	}
	raw, err := proto.Dispense(PluginName)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRuntimeUnavailable, err)
	}
	rt, ok := raw.(Runtime)
	if !ok {
		return nil, fmt.Errorf("podapi: plugin dispensed %T, not a Runtime", raw)
	}
	return rt, nil
}
