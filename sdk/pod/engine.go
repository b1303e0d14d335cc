package pod

import (
	"context"

	"github.com/ipa-dev/ipa/internal/podapi"
)

// engine adapts a Runtime to the engine (internal/podapi), which owns the
// wire protocol: go-plugin, gRPC and protobuf never show in this package's
// API.
func engine(rt Runtime) podapi.Runtime {
	a := &adapter{rt: rt}
	if f, ok := rt.(Finisher); ok {
		fa := &finishingAdapter{adapter: a, ch: make(chan podapi.ExitStatus, 1)}
		go func() {
			st := <-f.Finished()
			fa.ch <- podapi.ExitStatus{Code: st.Code, Signal: st.Signal, Reason: st.Reason, Message: st.Message}
		}()
		return fa
	}
	return a
}

type adapter struct{ rt Runtime }

var (
	_ podapi.Runtime   = (*adapter)(nil)
	_ podapi.Describer = (*adapter)(nil)
	_ podapi.Finisher  = (*finishingAdapter)(nil)
)

type finishingAdapter struct {
	*adapter
	ch chan podapi.ExitStatus
}

func (f *finishingAdapter) Finished() <-chan podapi.ExitStatus { return f.ch }

func (a *adapter) Describe(ctx context.Context, _ podapi.DescribeRequest) (podapi.DescribeResponse, error) {
	resp, err := a.rt.Describe(ctx, DescribeRequest{})
	if err != nil {
		return podapi.DescribeResponse{}, toEngine(err)
	}
	return podapi.DescribeResponse{
		Description:   resp.Description,
		ConfigSchema:  resp.ConfigSchema,
		ExampleConfig: resp.ExampleConfig,
	}, nil
}

func (a *adapter) Start(ctx context.Context, req podapi.StartRequest) (podapi.StartResponse, error) {
	_, err := a.rt.Start(ctx, StartRequest{
		TaskID:        req.TaskID,
		Title:         req.Title,
		Description:   req.Description,
		RuntimeConfig: req.RuntimeConfig,
		Attempt:       req.Attempt,
		WorkDir:       req.WorkDir,
		Host:          hostOf(req.Host),
	})
	return podapi.StartResponse{}, toEngine(err)
}

func (a *adapter) Attach(ctx context.Context, req podapi.AttachRequest) (podapi.AttachResponse, error) {
	resp, err := a.rt.Attach(ctx, AttachRequest{TaskID: req.TaskID, Host: hostOf(req.Host)})
	if err != nil {
		return podapi.AttachResponse{}, toEngine(err)
	}
	return podapi.AttachResponse{TaskID: resp.TaskID}, nil
}

func (a *adapter) State(ctx context.Context, _ podapi.StateRequest) (podapi.StateResponse, error) {
	resp, err := a.rt.State(ctx, StateRequest{})
	if err != nil {
		return podapi.StateResponse{}, toEngine(err)
	}
	return podapi.StateResponse{
		TaskID:      resp.TaskID,
		Phase:       resp.Phase,
		WantedPhase: resp.WantedPhase,
		Progress:    resp.Progress,
		Live:        resp.Live,
		Message:     resp.Message,
		Running:     resp.Running,
	}, nil
}

func (a *adapter) Stop(ctx context.Context, req podapi.StopRequest) (podapi.StopResponse, error) {
	resp, err := a.rt.Stop(ctx, StopRequest{Deadline: req.Deadline, Reason: req.Reason})
	if err != nil {
		return podapi.StopResponse{}, toEngine(err)
	}
	return podapi.StopResponse{Forced: resp.Forced}, nil
}

func (a *adapter) Health(ctx context.Context, _ podapi.HealthRequest) (podapi.HealthResponse, error) {
	h, ok := a.rt.(HealthReporter)
	if !ok {
		return podapi.HealthResponse{Healthy: true}, nil
	}
	resp, err := h.Health(ctx, HealthRequest{})
	if err != nil {
		return podapi.HealthResponse{}, toEngine(err)
	}
	return podapi.HealthResponse{Healthy: resp.Healthy, Message: resp.Message}, nil
}

// hostOf wraps the engine's host handle (nil stays nil).
func hostOf(h podapi.Host) Host {
	if h == nil {
		return nil
	}
	return host{h}
}

// host is the Host a runtime gets: the engine's handle, which stays valid
// across reattaches, with plain types.
type host struct{ h podapi.Host }

func (h host) AppendEvent(ctx context.Context, req AppendEventRequest) (AppendEventResponse, error) {
	resp, err := h.h.AppendEvent(ctx, podapi.AppendEventRequest{Type: req.Type, Data: req.Data})
	return AppendEventResponse{Version: resp.Version}, fromEngine(err)
}

func (h host) RequestPhase(ctx context.Context, req PhaseRequest) (PhaseResponse, error) {
	resp, err := h.h.RequestPhase(ctx, podapi.PhaseRequest{To: req.To, Note: req.Note})
	return PhaseResponse{Phase: resp.Phase}, fromEngine(err)
}

func (h host) Output(ctx context.Context, req OutputRequest) (OutputResponse, error) {
	lines := make([]podapi.OutputLine, len(req.Lines))
	for i, l := range req.Lines {
		lines[i] = podapi.OutputLine{Stream: l.Stream, Text: l.Text}
	}
	_, err := h.h.Output(ctx, podapi.OutputRequest{Lines: lines, Dropped: req.Dropped})
	return OutputResponse{}, fromEngine(err)
}
