// Package demo is the built-in "demo" runtime: it walks its task through
// SPEC_CLARIFICATION → PLANNING → DEVELOPMENT → REVIEW, one step every
// stepMs, by asking the host for each phase change, reports its progress as
// live state and a runtime.demo.step event per step, then idles in REVIEW
// until a person completes the task (or stops the pod). Before each step,
// and now and then while idle, it asks the host where the task is: a person
// may have moved it (transitionPhase), and the walk goes on from there.
//
// Runtime config: {"stepMs": 2000}; stepMs between MinStepMs and MaxStepMs,
// default DefaultStepMs.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/sdk/pod"
)

// Description is shown in the runtimes query.
const Description = "Walks the task through SPEC_CLARIFICATION, PLANNING, DEVELOPMENT and REVIEW on a timer ({\"stepMs\": 2000}), then waits for a person."

// Config limits and default.
const (
	DefaultStepMs = 2000
	MinStepMs     = 10
	MaxStepMs     = 3_600_000
)

// EventStep is the type of the event emitted at each step.
const EventStep = "runtime.demo.step"

// Config is the demo's runtime config.
type Config struct {
	StepMs int `json:"stepMs"`
}

// ParseConfig decodes and validates raw (a JSON object; empty or null means
// all defaults). Returns an EINVALID *ipa.Error (reason INVALID_ARGUMENT)
// saying what is wrong.
func ParseConfig(raw []byte) (Config, error) {
	c := Config{StepMs: DefaultStepMs}
	if t := bytes.TrimSpace(raw); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		var in struct {
			StepMs *json.Number `json:"stepMs"`
		}
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		dec.UseNumber()
		if err := dec.Decode(&in); err != nil {
			return Config{}, invalid("demo runtime config must be a JSON object like {\"stepMs\": 2000}: %v", err)
		}
		if in.StepMs != nil {
			n, err := in.StepMs.Int64()
			if err != nil {
				return Config{}, invalid("demo runtime config: stepMs must be an integer number of milliseconds, got %s", in.StepMs.String())
			}
			if n < MinStepMs || n > MaxStepMs {
				return Config{}, invalid("demo runtime config: stepMs must be between %d and %d, got %d", MinStepMs, MaxStepMs, n)
			}
			c.StepMs = int(n)
		}
	}
	return c, nil
}

// ValidateConfig reports whether raw is a valid demo config, without
// starting anything; see ParseConfig.
func ValidateConfig(raw []byte) error {
	_, err := ParseConfig(raw)
	return err
}

func invalid(format string, args ...any) error {
	return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, format, args...)
}

// Serve runs the demo runtime as a plugin process; it never returns.
func Serve() { pod.Serve(New()) }

// order is the walk; progress is the index over len-1.
var order = []ipa.Phase{ipa.PhaseSpecClarification, ipa.PhasePlanning, ipa.PhaseDevelopment, ipa.PhaseReview}

func index(p ipa.Phase) int {
	for i, o := range order {
		if o == p {
			return i
		}
	}
	return -1
}

// Runtime is the demo runtime. The zero value is not usable; use New.
type Runtime struct {
	mu      sync.Mutex
	taskID  string
	cfg     Config
	host    pod.Host
	phase   ipa.Phase // last phase the host confirmed
	step    int
	message string
	running bool
	cancel  context.CancelFunc
	done    chan struct{}
	resumed chan struct{} // non-nil while paused; closed by Resume
}

// New returns a demo runtime waiting for Start.
func New() *Runtime { return &Runtime{} }

var (
	_ pod.Runtime        = (*Runtime)(nil)
	_ pod.HealthReporter = (*Runtime)(nil)
	_ pod.Pauser         = (*Runtime)(nil)
)

// Pause stops the walk's timer: no step is taken until Resume (a step under
// way when it is called ends first). The plugin keeps answering.
func (r *Runtime) Pause(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.resumed == nil {
		r.resumed = make(chan struct{})
		r.message = "paused"
	}
	return nil
}

// Resume lets the walk go on; its next step comes a full stepMs later.
func (r *Runtime) Resume(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.resumed != nil {
		close(r.resumed)
		r.resumed = nil
		r.message = "resumed"
	}
	return nil
}

// waitResumed returns at once when the walk is not paused, else when it is
// resumed (true) or ctx ends (false).
func (r *Runtime) waitResumed(ctx context.Context) (waited, ok bool) {
	r.mu.Lock()
	ch := r.resumed
	r.mu.Unlock()
	if ch == nil {
		return false, true
	}
	select {
	case <-ch:
		return true, true
	case <-ctx.Done():
		return true, false
	}
}

// Start validates the config and starts the walk. Returns EINVALID for a bad
// config and ECONFLICT when already started.
func (r *Runtime) Start(startCtx context.Context, req pod.StartRequest) (pod.StartResponse, error) {
	cfg, err := ParseConfig(req.RuntimeConfig)
	if err != nil {
		return pod.StartResponse{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done != nil {
		return pod.StartResponse{}, pod.Errorf(pod.CodeConflict, pod.ReasonInvalidArgument, "The demo runtime is already started.")
	}
	// The start phase is not in StartRequest: assume the first one and
	// learn the real one from the host's first answer.
	r.taskID, r.cfg, r.host, r.phase = req.TaskID, cfg, req.Host, ipa.PhaseSpecClarification
	r.running, r.message = true, "starting"
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	// The first step's host calls belong to the start (its trace, when the
	// start was traced); later steps are the pod's own.
	first := trace.ContextWithSpanContext(ctx, trace.SpanContextFromContext(startCtx))
	go r.walk(ctx, first, r.done)
	return pod.StartResponse{}, nil
}

// idleProbe is how often an idle demo asks where its task is, at most: a
// person moving the task out of REVIEW is noticed within about this long
// (or stepMs, when longer).
const idleProbe = 500 * time.Millisecond

func (r *Runtime) walk(ctx, first context.Context, done chan struct{}) {
	defer close(done)
	defer func() {
		r.mu.Lock()
		r.running = false
		r.mu.Unlock()
	}()
	step := time.Duration(r.cfg.StepMs) * time.Millisecond
	tick := time.NewTicker(step)
	defer tick.Stop()
	idle := false
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			r.setMessage("stopped")
			return
		case now := <-tick.C:
			if waited, ok := r.waitResumed(ctx); !ok {
				r.setMessage("stopped")
				return
			} else if waited {
				// The timer starts over: a step comes stepMs after Resume.
				tick.Reset(step)
				continue
			}
			if idle && now.Sub(last) < idleProbe {
				continue
			}
			last = now
		}
		stepCtx := ctx
		if first != nil {
			stepCtx, first = first, nil
		}
		idle = r.stepOnce(stepCtx)
		r.mu.Lock()
		closed := r.phase.Final()
		r.mu.Unlock()
		if closed {
			// A closed task never moves again: stay up until stopped.
			<-ctx.Done()
			return
		}
	}
}

// stepOnce learns the task's current phase from the host, then asks for the
// next one; it reports true when there is nothing to do for now (REVIEW
// reached, or the task is closed).
func (r *Runtime) stepOnce(ctx context.Context) bool {
	r.mu.Lock()
	host := r.host
	r.mu.Unlock()
	// An empty To only asks where the task is. A host that does not know
	// that question refuses it, and its refusal carries the phase too.
	if cur, _ := host.RequestPhase(ctx, pod.PhaseRequest{}); cur.Phase != "" {
		r.mu.Lock()
		if p := ipa.Phase(cur.Phase); p != r.phase {
			r.phase = p
			r.message = "task moved to " + cur.Phase
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	from := r.phase
	r.mu.Unlock()
	if from.Final() {
		r.setMessage("task is closed")
		return true
	}
	i := index(from)
	if i < 0 || i == len(order)-1 {
		r.setMessage("in review: waiting for a person")
		return true
	}
	to := order[i+1]
	resp, err := host.RequestPhase(ctx, pod.PhaseRequest{To: string(to), Note: "demo runtime step"})
	var refused *pod.Error
	if errors.As(err, &refused) && refused.Reason == pod.ReasonApprovalPending {
		// A phase gate: the task waits for a person's approval; asking
		// again is idempotent, and moves on once it is given.
		r.mu.Lock()
		if resp.Phase != "" {
			r.phase = ipa.Phase(resp.Phase)
		}
		r.message = "waiting for approval to move to " + string(to)
		r.mu.Unlock()
		return false
	}
	r.mu.Lock()
	r.step++
	step := r.step
	switch {
	case err == nil:
		r.phase = ipa.Phase(resp.Phase)
		r.message = "moved to " + resp.Phase
	case errors.Is(err, pod.ErrHostUnavailable):
		r.message = "host unavailable; will retry"
	case resp.Phase != "":
		// Refused, e.g. a person moved the task: carry on from where it is.
		r.phase = ipa.Phase(resp.Phase)
		r.message = "phase request refused; task is in " + resp.Phase
	default:
		r.message = "phase request refused: " + err.Error()
	}
	now := r.phase
	r.mu.Unlock()

	data, _ := json.Marshal(map[string]any{
		"step": step, "from": from, "requested": to, "phase": now, "accepted": err == nil,
	})
	_, _ = host.AppendEvent(ctx, pod.AppendEventRequest{Type: EventStep, Data: data})
	if now == ipa.PhaseReview {
		r.setMessage("in review: waiting for a person")
		return true
	}
	return now.Final()
}

func (r *Runtime) setMessage(m string) {
	r.mu.Lock()
	r.message = m
	r.mu.Unlock()
}

// Attach needs nothing: the Host handle from Start follows the new host.
func (r *Runtime) Attach(_ context.Context, req pod.AttachRequest) (pod.AttachResponse, error) {
	return pod.AttachResponse{TaskID: req.TaskID}, nil
}

// State reports the phase, progress (0 at SPEC_CLARIFICATION, 1 at REVIEW),
// step count and a live JSON blob.
func (r *Runtime) State(context.Context, pod.StateRequest) (pod.StateResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	progress := 0.0
	wanted := ""
	if i := index(r.phase); i >= 0 {
		progress = float64(i) / float64(len(order)-1)
		if i < len(order)-1 && r.running {
			wanted = string(order[i+1])
		}
	} else if r.phase.Final() {
		progress = 1
	}
	live, _ := json.Marshal(map[string]any{
		"phase": r.phase, "step": r.step, "stepMs": r.cfg.StepMs, "progress": progress, "message": r.message,
	})
	return pod.StateResponse{
		TaskID: r.taskID, Phase: string(r.phase), WantedPhase: wanted, Progress: progress,
		Live: live, Message: r.message, Running: r.running,
	}, nil
}

// Stop ends the walk; it never needs force.
func (r *Runtime) Stop(ctx context.Context, _ pod.StopRequest) (pod.StopResponse, error) {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel == nil {
		return pod.StopResponse{}, nil
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return pod.StopResponse{}, nil
}

// Health is always healthy.
func (r *Runtime) Health(context.Context, pod.HealthRequest) (pod.HealthResponse, error) {
	return pod.HealthResponse{Healthy: true}, nil
}
