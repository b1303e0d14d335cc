package pod_test

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/ipa-dev/ipa/sdk/pod"
)

// echo is a minimal runtime: it writes the task's title as an output line
// and reports it as live state until it is stopped.
type echo struct {
	mu    sync.Mutex
	task  string
	title string
}

func (e *echo) Describe(context.Context, pod.DescribeRequest) (pod.DescribeResponse, error) {
	return pod.DescribeResponse{
		Description:   "Echoes the task's title.",
		ConfigSchema:  json.RawMessage(`{"type": "object", "additionalProperties": false}`),
		ExampleConfig: json.RawMessage(`{}`),
	}, nil
}

func (e *echo) Start(ctx context.Context, req pod.StartRequest) (pod.StartResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.task != "" {
		return pod.StartResponse{}, pod.Errorf(pod.CodeConflict, pod.ReasonInvalidArgument, "already running task %s", e.task)
	}
	e.task, e.title = req.TaskID, req.Title
	go func() {
		_, _ = req.Host.Output(context.Background(), pod.OutputRequest{Lines: []pod.OutputLine{{Stream: pod.Stdout, Text: req.Title}}})
	}()
	return pod.StartResponse{}, nil
}

func (e *echo) Attach(_ context.Context, req pod.AttachRequest) (pod.AttachResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if req.TaskID != e.task {
		return pod.AttachResponse{}, pod.Errorf(pod.CodeConflict, pod.ReasonInvalidArgument, "running task %q", e.task)
	}
	return pod.AttachResponse{TaskID: e.task}, nil
}

func (e *echo) State(context.Context, pod.StateRequest) (pod.StateResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	live, _ := json.Marshal(map[string]string{"title": e.title})
	return pod.StateResponse{TaskID: e.task, Running: e.task != "", Live: live}, nil
}

func (e *echo) Stop(context.Context, pod.StopRequest) (pod.StopResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.task = ""
	return pod.StopResponse{}, nil
}

// A runtime's main is one call to Serve.
func Example() {
	pod.Serve(&echo{})
}
