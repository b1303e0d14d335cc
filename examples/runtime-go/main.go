// Command hello is an example ipa pod runtime written outside the ipa
// repository: a module of its own that depends only on the public package
// github.com/ipa-dev/ipa/sdk/pod.
//
// On start it writes the output line "hello, <task title>", appends the event
// runtime.hello.greeted, asks for phase PLANNING and reports the live state
// {"greeted": true}; then it waits until it is asked to stop. With
// runtimeConfig {"fail": true} it exits with status 3 once it has greeted;
// with {"artifact": true} it also saves the greeting as the task's artifact
// greeting.txt (pod.ArtifactSaver).
//
// Build it, drop the binary into the server's plugin directory and restart
// the server:
//
//	go build -o /var/lib/ipa/plugins/hello .
//	ipa serve --plugin-dir /var/lib/ipa/plugins
package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/ipa-dev/ipa/sdk/pod"
)

// Runtime config: its schema, shown by the server and checked by createTask
// before a task exists, and an example the console pre-fills.
const (
	configSchema = `{
  "type": "object",
  "properties": {
    "fail": {"type": "boolean", "description": "Exit with status 3 after greeting, as a crash."},
    "artifact": {"type": "boolean", "description": "Save the greeting as the artifact greeting.txt."}
  },
  "additionalProperties": false
}`
	exampleConfig = `{"fail": false}`
)

type config struct {
	Fail     bool `json:"fail"`
	Artifact bool `json:"artifact"`
}

// hello is the runtime. One plugin process runs one task.
type hello struct {
	mu      sync.Mutex
	taskID  string
	greeted bool
	phase   string

	stop     chan struct{} // closed by Stop
	stopOnce sync.Once
	done     chan struct{}       // closed when the work has ended
	finished chan pod.ExitStatus // how the process ends, when the work ends on its own
}

func newHello() *hello {
	return &hello{stop: make(chan struct{}), done: make(chan struct{}), finished: make(chan pod.ExitStatus, 1)}
}

func (h *hello) Describe(context.Context, pod.DescribeRequest) (pod.DescribeResponse, error) {
	return pod.DescribeResponse{
		Description:   "Greets the task by its title, asks for PLANNING and waits to be stopped.",
		ConfigSchema:  json.RawMessage(configSchema),
		ExampleConfig: json.RawMessage(exampleConfig),
	}, nil
}

func (h *hello) Start(_ context.Context, req pod.StartRequest) (pod.StartResponse, error) {
	var cfg config
	if len(req.RuntimeConfig) > 0 {
		if err := json.Unmarshal(req.RuntimeConfig, &cfg); err != nil {
			return pod.StartResponse{}, pod.Errorf(pod.CodeInvalid, pod.ReasonInvalidArgument, "hello runtime config: %v", err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.taskID != "" {
		return pod.StartResponse{}, pod.Errorf(pod.CodeConflict, pod.ReasonInvalidArgument, "hello already runs task %s.", h.taskID)
	}
	h.taskID = req.TaskID
	// Start returns at once; the work goes on here.
	go h.work(req.Host, req.Title, cfg)
	return pod.StartResponse{}, nil
}

// work greets, then waits to be stopped (or ends with status 3).
func (h *hello) work(host pod.Host, title string, cfg config) {
	defer close(h.done)
	retry(h.stop, func(ctx context.Context) error {
		_, err := host.Output(ctx, pod.OutputRequest{Lines: []pod.OutputLine{{Stream: pod.Stdout, Text: "hello, " + title}}})
		return err
	})
	retry(h.stop, func(ctx context.Context) error {
		_, err := host.AppendEvent(ctx, pod.AppendEventRequest{Type: "runtime.hello.greeted", Data: json.RawMessage(`{"title":` + quote(title) + `}`)})
		return err
	})
	retry(h.stop, func(ctx context.Context) error {
		resp, err := host.RequestPhase(ctx, pod.PhaseRequest{To: pod.PhasePlanning, Note: "greeted"})
		var refused *pod.Error
		if errors.As(err, &refused) {
			err = nil // the task is elsewhere (a person moved it): fine
		}
		h.mu.Lock()
		h.phase = resp.Phase
		h.mu.Unlock()
		return err
	})
	if saver, ok := host.(pod.ArtifactSaver); ok && cfg.Artifact {
		retry(h.stop, func(ctx context.Context) error {
			_, err := saver.SaveArtifact(ctx, "greeting.txt", strings.NewReader("hello, "+title+"\n"))
			return err
		})
	}
	h.mu.Lock()
	h.greeted = true
	h.mu.Unlock()
	if cfg.Fail {
		h.finished <- pod.ExitStatus{Code: 3}
		return
	}
	<-h.stop
}

// retry calls f until it succeeds, gives up on errors other than a missing
// host, or stop is closed: a call made while the server restarts succeeds
// once it is back.
func retry(stop <-chan struct{}, f func(context.Context) error) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := f(ctx)
		cancel()
		if err == nil || !errors.Is(err, pod.ErrHostUnavailable) {
			if err != nil {
				pod.Logger().Warn("host refused", "error", err)
			}
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (h *hello) Attach(_ context.Context, req pod.AttachRequest) (pod.AttachResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.TaskID != h.taskID {
		return pod.AttachResponse{}, pod.Errorf(pod.CodeConflict, pod.ReasonInvalidArgument, "hello runs task %q, not %q.", h.taskID, req.TaskID)
	}
	// Nothing to re-bind: the Host from Start now reaches the new server.
	return pod.AttachResponse{TaskID: h.taskID}, nil
}

func (h *hello) State(context.Context, pod.StateRequest) (pod.StateResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := pod.StateResponse{TaskID: h.taskID, Phase: h.phase, Running: h.taskID != ""}
	select {
	case <-h.done:
		st.Running = false
	default:
	}
	if h.greeted {
		st.Live = json.RawMessage(`{"greeted": true}`)
		st.Progress = 1
		st.Message = "greeted; waiting to be stopped"
	}
	return st, nil
}

func (h *hello) Stop(ctx context.Context, req pod.StopRequest) (pod.StopResponse, error) {
	h.stopOnce.Do(func() { close(h.stop) })
	h.mu.Lock()
	started := h.taskID != ""
	h.mu.Unlock()
	if !started {
		return pod.StopResponse{}, nil
	}
	// The work ends at once when asked; a runtime with real work would
	// end it gracefully and kill it at req.Deadline (Forced: true).
	select {
	case <-h.done:
	case <-ctx.Done():
	}
	return pod.StopResponse{}, nil
}

// Finished makes hello a pod.Finisher: the process exits with the status
// sent (3 for {"fail": true}).
func (h *hello) Finished() <-chan pod.ExitStatus { return h.finished }

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func main() { pod.Serve(newHello()) }
