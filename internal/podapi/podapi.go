// Package podapi is the contract between the ipa server (the host) and a pod
// runtime plugin: the go-plugin handshake and plugin map, the Go interfaces
// both sides program against, and the gRPC glue for both sides. The host
// (internal/supervisor) imports it; runtimes (plugins/..., and any outside
// this repository) import its public face, sdk/pod, which uses it as its
// engine; neither side imports the other. Protobuf types never leave it: its
// exported API is plain Go. Protocol versions: see versions.go.
//
// # Shape of a pod
//
// The supervisor launches a plugin process with NewClientConfig, dispenses the
// Runtime with Dispense and calls Start, handing it a Host bound to the task.
// The plugin calls back into that Host (over go-plugin's GRPCBroker) to
// append runtime.* events, ask for phase changes and stream output. Every call
// has the shape (ctx, XRequest) (XResponse, error) so fields can be added
// later without breaking either side.
//
// # Reattach after a host crash
//
// Plugin processes outlive their host: NewClientConfig puts them in their own
// process group (a ^C to the server does not reach them) and sets no parent
// death signal, and Serve ignores SIGPIPE so writes to the vanished host's
// stdio pipes fail quietly instead of killing the plugin. The supervisor
// persists Reattach(client) (a ReattachInfo: pid, network, address) while the
// pod runs. When the server comes back it builds a client with
// NewReattachConfig(info), dispenses the Runtime and calls Attach with a fresh
// Host: the work is not restarted. go-plugin's broker cannot be reused by a
// second host (the plugin side closes it for good when the first host's
// broker stream ends), so on Attach the host serves the Host service on a
// private unix socket of its own and sends the plugin its address; the
// plugin's Host handle (the one it got in StartRequest) is re-pointed there,
// so runtime code keeps using the same Host value across reattaches.
//
// # Orphans exit on their own
//
// A plugin whose host is gone for good must not run forever. Serve counts the
// host connections to the plugin's gRPC server; when none is left (and at
// startup, before the first one), it waits OrphanGrace (env
// IPA_PLUGIN_ORPHAN_GRACE as a Go duration, default 60s). If no host has
// (re)attached by then — or a connected host that was polling has made no
// call for that long (it was paused, or starved) — it calls Stop on the
// runtime with a short deadline and exits the process with ExitHostSilent,
// after an exit report of reason "host_silent": a host that comes back still
// owning the pod reads it and records the work as lost, not finished.
package podapi

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/go-plugin"
)

// PluginName is the single entry of PluginMap: the runtime a plugin serves.
const PluginName = "runtime"

// Handshake is checked by both sides before anything else: a binary started by
// mistake (or a plugin for another program) refuses to run. Its
// ProtocolVersion is the oldest version (1), the one a plugin that knows no
// other speaks; the versions actually offered are negotiated through
// VersionedPluginMap (see versions.go).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "IPA_POD_PLUGIN",
	MagicCookieValue: "d7c1f0e2-5b7a-4f4e-9a55-ipa-runtime-v1",
}

// PluginMap is the plugin set for both sides. On the plugin side Serve fills
// in the implementation; on the host side the value dispenses a Runtime.
var PluginMap = map[string]plugin.Plugin{
	PluginName: &RuntimePlugin{},
}

// ErrRuntimeUnavailable is the one error a host-side call returns when the
// plugin process is dead or unreachable (connection refused or closed, EOF,
// gRPC Unavailable) or did not answer before the call's deadline. A call
// never hangs: every host-side call has a deadline (DefaultCallTimeout when
// the caller's context has none). Test with errors.Is.
var ErrRuntimeUnavailable = errors.New("podapi: runtime plugin unavailable")

// ErrHostUnavailable is returned by a plugin-side Host call while no host is
// connected (the server is down or restarting). Runtimes should keep working
// and retry later: a host may reattach within the orphan grace period.
var ErrHostUnavailable = errors.New("podapi: host unavailable")

// DefaultCallTimeout bounds a host-side call whose context has no deadline.
const DefaultCallTimeout = 5 * time.Second

// Runtime is what a plugin implements and what the host calls. Every method
// may return an *ipa.Error (it crosses the process boundary with its code,
// reason and message intact); on the host side any transport failure is
// ErrRuntimeUnavailable instead.
type Runtime interface {
	// Start begins work for the task and returns promptly; the work goes on
	// in the plugin. Returns an EINVALID *ipa.Error for a bad runtime config,
	// and an ECONFLICT one when work was already started.
	Start(ctx context.Context, req StartRequest) (StartResponse, error)
	// Attach re-binds the host service after the host restarted and
	// reattached to this running plugin; the work is not restarted. Returns
	// an ECONFLICT *ipa.Error when the plugin runs another task (or none).
	Attach(ctx context.Context, req AttachRequest) (AttachResponse, error)
	// State reports the live state of the work.
	State(ctx context.Context, req StateRequest) (StateResponse, error)
	// Stop ends the work gracefully, forcibly once req.Deadline has passed.
	Stop(ctx context.Context, req StopRequest) (StopResponse, error)
	// Health reports whether the plugin is able to do its work.
	Health(ctx context.Context, req HealthRequest) (HealthResponse, error)
}

// StartRequest starts the work of one task.
type StartRequest struct {
	TaskID        string
	Title         string
	Description   string
	RuntimeConfig []byte // JSON object; empty means {}
	Attempt       int    // 1 for the first start, +1 per restart
	// WorkDir is the task's working directory, chosen and created by the host
	// (by convention <dataDir>/tasks/<taskID>). A runtime that needs one
	// creates it when it is missing; empty means the runtime picks one.
	WorkDir string
	// Host is the task's host service. On the host side the supervisor sets
	// it; it is served to the plugin over go-plugin's GRPCBroker. On the
	// plugin side it is a handle that stays valid across reattaches.
	Host Host
}

// StartResponse is empty for now.
type StartResponse struct{}

// AttachRequest re-binds a running plugin to a (restarted) host.
type AttachRequest struct {
	TaskID string // the task the host believes this plugin runs
	Host   Host   // set by the host side; see StartRequest.Host
}

// AttachResponse names the task the plugin runs.
type AttachResponse struct {
	TaskID string
}

// StateRequest is empty for now.
type StateRequest struct{}

// StateResponse is the live state of a runtime's work.
type StateResponse struct {
	TaskID      string
	Phase       string  // the phase the host last confirmed ("" when unknown)
	WantedPhase string  // the phase the runtime works towards ("" when none)
	Progress    float64 // 0..1
	Live        []byte  // JSON object shown as Pod.live; nil when none
	Message     string  // one line for a person
	Running     bool    // the work is still going on
}

// StopRequest asks for a graceful stop.
type StopRequest struct {
	Deadline time.Time // zero: the runtime's own default
	Reason   string
}

// StopResponse says how the work ended.
type StopResponse struct {
	Forced bool // the work had to be killed at the deadline
}

// HealthRequest is empty for now.
type HealthRequest struct{}

// HealthResponse is the plugin's own view of its health.
type HealthResponse struct {
	Healthy bool
	Message string
}

// Host is implemented by the server and given to the plugin. Each pod gets
// its own Host bound to its own task: no request names a task, so a runtime
// cannot write to another task's stream.
type Host interface {
	// AppendEvent appends an event of the runtime's own to the task's
	// stream. Only types under ipa.RuntimeEventPrefix ("runtime.") are
	// accepted; others get an EINVALID *ipa.Error.
	AppendEvent(ctx context.Context, req AppendEventRequest) (AppendEventResponse, error)
	// RequestPhase asks to move the task to another phase, checked with
	// ipa.CheckPhaseTransition. On refusal it returns the *ipa.Error and,
	// when known, the task's current phase in PhaseResponse.Phase. An empty
	// To asks for nothing: the answer is the task's current phase (a person
	// may have moved it).
	RequestPhase(ctx context.Context, req PhaseRequest) (PhaseResponse, error)
	// Output records lines the work printed (as pod_output events).
	Output(ctx context.Context, req OutputRequest) (OutputResponse, error)
}

// AppendEventRequest is a runtime.* event.
type AppendEventRequest struct {
	Type string
	Data []byte // JSON; empty means {}
}

// AppendEventResponse carries the version of the appended event.
type AppendEventResponse struct {
	Version int64
}

// PhaseRequest asks for a phase change; an empty To only asks for the
// current phase.
type PhaseRequest struct {
	To   string
	Note string
}

// PhaseResponse carries the task's phase after the request.
type PhaseResponse struct {
	Phase string
}

// OutputLine is one line of output, without its newline.
type OutputLine struct {
	Stream string // "stdout" or "stderr"
	Text   string
}

// Output streams.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// OutputRequest is a batch of output lines. Dropped counts lines the runtime
// dropped (over its cap) since its previous report.
type OutputRequest struct {
	Lines   []OutputLine
	Dropped int
}

// OutputResponse is empty for now.
type OutputResponse struct{}
