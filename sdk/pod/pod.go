// Package pod is the public contract of an ipa pod runtime: what a runtime
// plugin written outside the ipa repository implements, and the host it talks
// to. A runtime is a separate executable; the ipa server launches it (from
// its --plugin-dir), and the two speak gRPC through HashiCorp go-plugin.
//
// A runtime implements Runtime with plain Go types and calls Serve from its
// main:
//
//	func main() { pod.Serve(&hello{}) }
//
// Every call has the shape (ctx, XRequest) (XResponse, error), so fields can
// be added to requests and responses in later versions without breaking a
// runtime built today. Errors meant for the person who asked are *Error
// values (a code, a reason, a message); they cross the process boundary
// intact.
//
// # Lifecycle
//
// Start begins the work of one task and returns promptly; the work goes on in
// the plugin. StartRequest.Host is the task's host service: the runtime calls
// it to write output lines, append runtime.* events and ask for phase
// changes, and the host polls State for the live state shown as Pod.live.
// Stop ends the work (forcibly once StopRequest.Deadline has passed); after
// it answers, the host shuts the plugin process down. When the work ends on
// its own, a runtime that implements Finisher says with which exit status the
// process ends.
//
// The plugin process outlives a restart of the server. The restarted server
// finds it again and calls Attach instead of Start: the work is not
// restarted, and the Host value the runtime got in Start keeps working (its
// calls fail with ErrHostUnavailable while no server is connected). A plugin
// with no server for a while (IPA_PLUGIN_ORPHAN_GRACE, default 60s) is
// stopped and exits by itself.
//
// docs/runtimes.md in the ipa repository is the guide: how to write, test
// (package podtest and `ipa plugin check`), package, allow-list and deploy a
// runtime, and the wire protocol for runtimes written in other languages.
package pod

import (
	"context"
	"encoding/json"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ipa-dev/ipa/internal/podapi"
)

// ProtocolVersion is the newest protocol version this package speaks; a
// runtime built with it also speaks every older version down to
// MinProtocolVersion, so it runs on older servers too (without the calls
// those do not know).
const (
	ProtocolVersion    = 3
	MinProtocolVersion = 1
)

// Runtime is what a plugin implements.
type Runtime interface {
	// Describe says what the runtime is: a description and the JSON Schema
	// of its runtime config, with an example. The server asks once when it
	// discovers the plugin; it must not depend on a task.
	Describe(ctx context.Context, req DescribeRequest) (DescribeResponse, error)
	// Start begins the work of req.TaskID and returns promptly. It returns
	// an *Error with CodeInvalid for a bad config, and one with
	// CodeConflict when work was already started.
	Start(ctx context.Context, req StartRequest) (StartResponse, error)
	// Attach tells the runtime that a restarted server took it over: the
	// work goes on and req.Host is the same handle Start got, now pointed at
	// the new server. It returns an *Error with CodeConflict when the runtime
	// runs another task than req.TaskID.
	Attach(ctx context.Context, req AttachRequest) (AttachResponse, error)
	// State reports the live state of the work. The host polls it.
	State(ctx context.Context, req StateRequest) (StateResponse, error)
	// Stop ends the work: gracefully, and forcibly once req.Deadline has
	// passed (zero: the runtime's own default). It returns when the work
	// has ended.
	Stop(ctx context.Context, req StopRequest) (StopResponse, error)
}

// HealthReporter is implemented by a Runtime that reports its own health; a
// Runtime that does not is healthy.
type HealthReporter interface {
	Health(ctx context.Context, req HealthRequest) (HealthResponse, error)
}

// Finisher is implemented by a Runtime whose work ends on its own. When the
// channel yields, the plugin process exits with that status (and the server
// records a clean stop for code 0, a crash otherwise). Report what there is
// to report through the Host before sending.
type Finisher interface {
	Finished() <-chan ExitStatus
}

// ExitStatus is how the plugin process ends: with Code, or killed by Signal
// when it is non-zero. Reason (with Message), when set, tells the server why,
// in the crash it records (e.g. "timeout").
type ExitStatus struct {
	Code    int
	Signal  syscall.Signal
	Reason  string
	Message string
}

// DescribeRequest is empty for now.
type DescribeRequest struct{}

// DescribeResponse is what a runtime says about itself. The server shows it
// in Query.runtimes and validates every task's runtimeConfig against
// ConfigSchema before creating the task.
type DescribeResponse struct {
	// Description is one or two sentences for a person.
	Description string
	// ConfigSchema is a JSON Schema (draft 2020-12 unless $schema says
	// otherwise) for the runtime config; nil accepts any JSON object. Use
	// the "description" keyword on properties: the console shows them.
	ConfigSchema json.RawMessage
	// ExampleConfig is a config valid against ConfigSchema; the console
	// pre-fills it. Nil: none.
	ExampleConfig json.RawMessage
}

// StartRequest starts the work of one task.
type StartRequest struct {
	TaskID        string
	Title         string
	Description   string
	RuntimeConfig json.RawMessage // a JSON object; empty means {}
	Attempt       int             // 1 for the first start, +1 per restart
	// WorkDir is the task's working directory, chosen by the server; create
	// it when missing. Empty: the runtime picks one.
	WorkDir string
	// Host is the task's host service, valid for the life of the process.
	Host Host
}

// StartResponse is empty for now.
type StartResponse struct{}

// AttachRequest tells the runtime a restarted server took it over.
type AttachRequest struct {
	TaskID string // the task the server believes this runtime runs
	Host   Host   // the same handle as StartRequest.Host
}

// AttachResponse names the task the runtime runs.
type AttachResponse struct {
	TaskID string
}

// StateRequest is empty for now.
type StateRequest struct{}

// StateResponse is the live state of the work.
type StateResponse struct {
	TaskID      string
	Phase       string          // the phase the host last confirmed ("" when unknown)
	WantedPhase string          // the phase the runtime works towards ("" when none)
	Progress    float64         // 0..1
	Live        json.RawMessage // a JSON object, shown as Pod.live; nil when none
	Message     string          // one line for a person
	Running     bool            // the work is still going on
}

// StopRequest asks the work to end.
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

// HealthResponse is the runtime's own view of its health.
type HealthResponse struct {
	Healthy bool
	Message string
}

// Host is the server side of the conversation, bound to the task the runtime
// was started for: no request names a task, so a runtime cannot write to
// another task. Calls fail with ErrHostUnavailable while no server is
// connected (it is restarting); keep working and try again later.
type Host interface {
	// AppendEvent appends an event of the runtime's own to the task's
	// stream. Its type must start with "runtime." (by convention
	// "runtime.<runtime name>.<what happened>"); others get CodeInvalid.
	AppendEvent(ctx context.Context, req AppendEventRequest) (AppendEventResponse, error)
	// RequestPhase asks to move the task to another phase (one step
	// forward, or back). On refusal it returns the *Error and, when known,
	// the task's current phase. An empty To only asks for the current
	// phase (a person may have moved the task).
	RequestPhase(ctx context.Context, req PhaseRequest) (PhaseResponse, error)
	// Output records lines the work printed (as pod_output events).
	Output(ctx context.Context, req OutputRequest) (OutputResponse, error)
}

// Conversing is the conversation side of the Host the SDK hands a runtime
// (protocol version 3): messages people send to the task, and questions the
// runtime asks them. Get it with a type assertion,
//
//	conv, ok := req.Host.(pod.Conversing)
//
// (a Host of your own, such as a test fake, need not implement it).
type Conversing interface {
	// Messages calls fn with each message people send to the task, in the
	// order they were sent, each once per run of the plugin, and records it
	// delivered (message_delivered) once fn returns nil. Messages sent while
	// no pod ran come first. It keeps going across restarts of the server
	// and returns only when ctx ends (ctx.Err()), fn fails (its error), or
	// the server is older than protocol version 3 (ErrUnsupported).
	Messages(ctx context.Context, fn func(Message) error) error
	// Ask asks a person and waits for the answer (or the request's expiry,
	// or the task's close). Asking again with the same Key is the same
	// request: a runtime that restarted asks again and gets the answer
	// given meanwhile. It waits across restarts of the server, until ctx
	// ends; ErrUnsupported on a server older than protocol version 3.
	Ask(ctx context.Context, req AskRequest) (Answer, error)
}

// AppendEventRequest is a runtime.* event.
type AppendEventRequest struct {
	Type string
	Data json.RawMessage // a JSON object; empty means {}
}

// AppendEventResponse carries the version of the appended event.
type AppendEventResponse struct {
	Version int64
}

// Phases a task moves through, in order.
const (
	PhaseSpecClarification = "SPEC_CLARIFICATION"
	PhasePlanning          = "PLANNING"
	PhaseDevelopment       = "DEVELOPMENT"
	PhaseReview            = "REVIEW"
)

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

// Output streams.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// OutputLine is one line of output, without its newline.
type OutputLine struct {
	Stream string // Stdout or Stderr
	Text   string
}

// OutputRequest is a batch of output lines. Dropped counts lines the runtime
// dropped (over a cap of its own) since its previous report.
type OutputRequest struct {
	Lines   []OutputLine
	Dropped int
}

// OutputResponse is empty for now.
type OutputResponse struct{}

// ErrHostUnavailable is returned by a Host call while no server is
// connected. Test with errors.Is.
var ErrHostUnavailable = podapi.ErrHostUnavailable

// Logger is the plugin's logger. It writes to the stderr the server reads
// and, when IPA_PLUGIN_LOG_FILE is set, to that file too. Never write to
// os.Stdout or os.Stderr yourself once Serve runs: nobody reads them after
// the server went away.
func Logger() hclog.Logger { return podapi.Logger() }

// Serve runs rt as a plugin process and never returns: a runtime's main is
// one call to it. It checks the handshake (a plugin started by hand says so
// and exits 1), serves rt, and exits when the server shuts the plugin down
// (after Stop), when a Finisher finishes (with its status), or when no
// server has been connected for the orphan grace period (after Stop).
func Serve(rt Runtime) {
	podapi.Serve(engine(rt))
}
