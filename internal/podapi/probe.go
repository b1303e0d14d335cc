package podapi

import (
	"context"
	"fmt"
	"os/exec"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// Probe is what a plugin says when it is launched only to be asked about
// itself: the protocol version it negotiated and its self-description.
type Probe struct {
	ProtocolVersion int
	DescribeResponse
}

// ProbeCommand launches cmd as a plugin, completes the handshake, asks it to
// Describe itself and shuts it down (go-plugin's graceful shutdown, then a
// kill). It returns an error when the plugin cannot be launched, does not
// complete the handshake within timeout, or refuses to describe itself.
func ProbeCommand(ctx context.Context, cmd *exec.Cmd, timeout time.Duration, logger hclog.Logger) (Probe, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	cfg := NewClientConfig(cmd, logger)
	cfg.StartTimeout = timeout
	client := plugin.NewClient(cfg)
	defer client.Kill()

	type result struct {
		rt  Runtime
		err error
	}
	done := make(chan result, 1)
	go func() {
		rt, err := Dispense(client)
		done <- result{rt, err}
	}()
	var rt Runtime
	select {
	case r := <-done:
		if r.err != nil {
			return Probe{}, r.err
		}
		rt = r.rt
	case <-ctx.Done():
		client.Kill()
		<-done
		return Probe{}, ctx.Err()
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d, err := Describe(dctx, rt)
	if err != nil {
		return Probe{}, fmt.Errorf("describe: %w", err)
	}
	return Probe{ProtocolVersion: NegotiatedVersion(rt), DescribeResponse: d}, nil
}
