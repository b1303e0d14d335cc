package pod

import (
	"context"

	"github.com/ipa-dev/ipa/internal/podapi"
)

// Pauser is implemented by a Runtime that pauses its own work (protocol
// version 3). pausePod then calls Pause instead of stopping the plugin's
// processes with SIGSTOP, and resumePod calls Resume: the work must make no
// progress between them, while the plugin keeps answering (State, Health,
// Stop; Stop of paused work ends it). Pausing paused work, or resuming
// running work, does nothing. A Runtime that does not implement it is
// paused with signals: every process of its plugin's process group but the
// plugin itself stops, so work done inside the plugin process goes on.
type Pauser interface {
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

var _ podapi.Pauser = (*adapter)(nil)

func (a *adapter) Pause(ctx context.Context) error {
	p, ok := a.rt.(Pauser)
	if !ok {
		return podapi.ErrUnsupported
	}
	return toEngine(p.Pause(ctx))
}

func (a *adapter) Resume(ctx context.Context) error {
	p, ok := a.rt.(Pauser)
	if !ok {
		return podapi.ErrUnsupported
	}
	return toEngine(p.Resume(ctx))
}
