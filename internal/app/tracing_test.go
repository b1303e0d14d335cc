package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ipa-dev/ipa/internal/app"
	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/pgtest"
	"github.com/ipa-dev/ipa/internal/supervisor"
	"github.com/ipa-dev/ipa/internal/tracing"
	"github.com/ipa-dev/ipa/plugins/builtin"
)

// The tracing tests run a server in this process, with the SDK's in-memory
// exporter as the global provider, and real plugin processes (the ipa
// binary, built once here): the spans of the host side are all here, and
// the plugin's calls back into the host show whether the trace context
// crossed the plugin boundary both ways.
var (
	ipaBin string
	spans  = tracetest.NewInMemoryExporter()
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ipa-app-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ipaBin = filepath.Join(dir, "ipa")
	if out, err := exec.Command("go", "build", "-o", ipaBin, "github.com/ipa-dev/ipa/cmd/ipa").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build ipa: %v\n%s", err, out)
		os.Exit(1)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	tracing.Install(tp)
	code := m.Run()
	pgtest.Stop() // the cluster of the PostgreSQL tests, if one started
	_ = tp.Shutdown(context.Background())
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// tracedServer is a server launching real plugins, behind a test listener.
func tracedServer(t *testing.T) *httptest.Server {
	t.Helper()
	a := apptest.New(t, dbtest.URL(t, "sqlite"), auth.ModeAuto, func(c *app.Config) {
		c.Launcher = supervisor.LauncherFunc(func(runtime string) (*exec.Cmd, error) {
			return exec.Command(ipaBin, builtin.Args(runtime)...), nil
		})
	})
	srv := httptest.NewServer(a.Handler)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { _ = a.Close() }) // runs first: pods stop before the listener goes
	return srv
}

func post(t *testing.T, srv *httptest.Server, query string, vars map[string]any, out any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	resp, err := http.Post(srv.URL+"/graphql", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data   json.RawMessage
		Errors []json.RawMessage
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.Errors) > 0 {
		t.Fatalf("%s: %v %s", query, err, r.Errors)
	}
	if out != nil {
		if err := json.Unmarshal(r.Data, out); err != nil {
			t.Fatal(err)
		}
	}
}

// spanTree indexes the ended spans of one trace.
type spanTree struct{ spans tracetest.SpanStubs }

func (s spanTree) named(name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, sp := range s.spans {
		if sp.Name == name {
			out = append(out, sp)
		}
	}
	return out
}

func (s spanTree) children(parent tracetest.SpanStub, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, sp := range s.spans {
		if sp.Name == name && sp.Parent.SpanID() == parent.SpanContext.SpanID() && sp.SpanContext.TraceID() == parent.SpanContext.TraceID() {
			out = append(out, sp)
		}
	}
	return out
}

func (s spanTree) String() string {
	var b strings.Builder
	for _, sp := range s.spans {
		fmt.Fprintf(&b, "%s %s parent=%s links=%d\n", sp.SpanContext.SpanID(), sp.Name, sp.Parent.SpanID(), len(sp.Links))
	}
	return b.String()
}

func attr(sp tracetest.SpanStub, key string) string {
	for _, kv := range sp.Attributes {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// waitTrace returns the spans exported so far once cond (which says what
// is still missing) holds on them, or fails the test after a while.
func waitTrace(t *testing.T, cond func(spanTree) string) spanTree {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		tree := spanTree{spans: spans.GetSpans()}
		why := cond(tree)
		if why == "" {
			return tree
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s\nspans:\n%s", why, tree)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// one is the only span of sps, or why there is not exactly one.
func one(sps []tracetest.SpanStub, what string) (tracetest.SpanStub, string) {
	if len(sps) != 1 {
		return tracetest.SpanStub{}, fmt.Sprintf("%d spans %s, want 1", len(sps), what)
	}
	return sps[0], ""
}

// TestTraceOfCreateTaskWithAutoStart: createTask(autoStart) is one trace:
// the GraphQL operation, under it the store transaction that created the
// task and the pod.start, under which the gRPC Start into the plugin and
// the transaction recording pod_started; the plugin's first call back into
// the host (RequestPhase) continues the same trace under that Start call,
// so the context crossed into the plugin and came back.
func TestTraceOfCreateTaskWithAutoStart(t *testing.T) {
	spans.Reset()
	srv := tracedServer(t)
	var out struct {
		CreateTask struct{ Task struct{ ID string } }
	}
	post(t, srv, `mutation($in: CreateTaskInput!) { createTask(input: $in) { task { id } } }`,
		map[string]any{"in": map[string]any{"title": "traced", "autoStart": true, "runtimeConfig": map[string]any{"stepMs": 50}}}, &out)
	id := out.CreateTask.Task.ID

	waitTrace(t, func(tree spanTree) string {
		op, why := one(tree.named("graphql mutation createTask"), "graphql mutation createTask")
		if why != "" {
			return why
		}
		if op.Parent.IsValid() || op.SpanKind != trace.SpanKindServer || attr(op, "graphql.operation.type") != "mutation" {
			return "the operation span is not a root server span of type mutation"
		}
		if n := len(tree.children(op, "store.transaction")); n < 1 {
			return "no store.transaction under the operation (the task's creation)"
		}
		start, why := one(tree.children(op, "pod.start"), "pod.start under the operation")
		if why != "" {
			return why
		}
		if attr(start, "ipa.task.id") != id || attr(start, "ipa.pod.trigger") != "auto_start" || attr(start, "ipa.runtime") != "demo" {
			return fmt.Sprintf("pod.start attributes %v", start.Attributes)
		}
		call, why := one(tree.children(start, "ipa.podapi.v1.Runtime/Start"), "gRPC Start under pod.start")
		if why != "" {
			return why
		}
		if call.SpanKind != trace.SpanKindClient {
			return "Runtime/Start is not a client span"
		}
		if len(tree.children(start, "store.transaction")) < 1 {
			return "no store.transaction (pod_started) under pod.start"
		}
		if len(tree.children(call, "ipa.podapi.v1.Host/RequestPhase")) < 1 {
			return "the plugin's first RequestPhase did not join the trace under Runtime/Start"
		}
		return ""
	})
}

// TestTraceOfCrashAndRestart: a killed plugin is a pod.crash, the root of
// a trace of its own linked to the pod.start of the run that crashed; under
// it the transaction recording the crash and the pod.restart after the
// back-off, which holds the new run's pod.start and its Start call.
func TestTraceOfCrashAndRestart(t *testing.T) {
	spans.Reset()
	srv := tracedServer(t)
	var out struct {
		CreateTask struct {
			Task struct {
				ID  string
				Pod struct{ PID int }
			}
		}
	}
	post(t, srv, `mutation($in: CreateTaskInput!) { createTask(input: $in) { task { id pod { pid } } } }`,
		map[string]any{"in": map[string]any{"title": "crashing", "autoStart": true, "runtimeConfig": map[string]any{"stepMs": 200},
			"restartPolicy": map[string]any{"autoRestart": true, "maxAttempts": 3, "windowSeconds": 60, "initialBackoffMs": 100, "maxBackoffMs": 100}}}, &out)
	id, pid := out.CreateTask.Task.ID, out.CreateTask.Task.Pod.PID
	if pid <= 0 {
		t.Fatalf("no pod pid after createTask(autoStart): %+v", out)
	}
	first := waitTrace(t, func(tree spanTree) string {
		_, why := one(tree.named("pod.start"), "pod.start")
		return why
	}).named("pod.start")[0]
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	waitTrace(t, func(tree spanTree) string {
		crash, why := one(tree.named("pod.crash"), "pod.crash")
		if why != "" {
			return why
		}
		if crash.Parent.IsValid() || attr(crash, "ipa.task.id") != id || attr(crash, "ipa.pod.crash.signal") != "SIGKILL" {
			return fmt.Sprintf("pod.crash is not a root span of task %s with signal SIGKILL: parent %v, %v", id, crash.Parent.SpanID(), crash.Attributes)
		}
		if len(crash.Links) != 1 || crash.Links[0].SpanContext.SpanID() != first.SpanContext.SpanID() {
			return "pod.crash does not link the pod.start of the run that crashed"
		}
		if len(tree.children(crash, "store.transaction")) < 1 {
			return "no store.transaction (pod_crashed) under pod.crash"
		}
		restart, why := one(tree.children(crash, "pod.restart"), "pod.restart under pod.crash")
		if why != "" {
			return why
		}
		start, why := one(tree.children(restart, "pod.start"), "pod.start under pod.restart")
		if why != "" {
			return why
		}
		if attr(start, "ipa.pod.trigger") != "restart" {
			return "the restart's pod.start has trigger " + attr(start, "ipa.pod.trigger")
		}
		if len(tree.children(start, "ipa.podapi.v1.Runtime/Start")) != 1 {
			return "no gRPC Start under the restart's pod.start"
		}
		return ""
	})

	// A stop asked for through the API: its pod.stop holds the runtime's Stop.
	post(t, srv, `mutation($id: ID!) { stopPod(taskId: $id) { task { id } } }`, map[string]any{"id": id}, nil)
	waitTrace(t, func(tree spanTree) string {
		op, why := one(tree.named("graphql mutation stopPod"), "graphql mutation stopPod")
		if why != "" {
			return why
		}
		stop, why := one(tree.children(op, "pod.stop"), "pod.stop under the operation")
		if why != "" {
			return why
		}
		if len(tree.children(stop, "ipa.podapi.v1.Runtime/Stop")) != 1 || len(tree.children(stop, "store.transaction")) < 1 {
			return "pod.stop lacks the gRPC Stop or the pod_stopped transaction"
		}
		return ""
	})
}
