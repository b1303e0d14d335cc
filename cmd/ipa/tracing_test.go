package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestServeExportsTracesByOTELEnvironment: `ipa serve` with nothing but
// the standard OTEL_* variables sends OTLP traces to the endpoint they
// name, from the server (service ipa: the GraphQL operation, the pod start)
// and from the plugin it launched (service ipa-plugin: its side of the
// gRPC Start), and without them sends nothing.
func TestServeExportsTracesByOTELEnvironment(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		bodies [][]byte
	)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" {
			mu.Lock()
			bodies = append(bodies, b)
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	received := func(parts ...string) bool {
		mu.Lock()
		defer mu.Unlock()
		all := bytes.Join(bodies, nil)
		for _, p := range parts {
			if !bytes.Contains(all, []byte(p)) {
				return false
			}
		}
		return true
	}

	h := newHome(t)
	h.env = []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + collector.URL, "OTEL_BSP_SCHEDULE_DELAY=100"}
	s := h.start()
	id := s.createTask(t, map[string]any{"runtimeConfig": demoConfig(50), "autoStart": true})
	s.waitPod(t, id, "RUNNING", "ACTIVE", 0, 10*time.Second)
	eventually(t, 20*time.Second, func() string {
		// Protobuf keeps strings as they are: the span names and services
		// are in the request bodies.
		if !received("graphql mutation createTask", "pod.start", "store.transaction", "ipa.podapi.v1.Runtime/Start", "ipa-plugin", id) {
			return "the collector has not received the server's and the plugin's spans"
		}
		return ""
	})

	// Without OTEL_* nothing is sent.
	mu.Lock()
	bodies = nil
	mu.Unlock()
	quiet := newHome(t)
	q := quiet.start()
	q.createTask(t, map[string]any{"runtimeConfig": demoConfig(50), "autoStart": true})
	time.Sleep(500 * time.Millisecond) // five export intervals of the traced server's setting
	mu.Lock()
	n := len(bodies)
	mu.Unlock()
	if n != 0 && received("graphql mutation createTask") {
		t.Fatalf("a server without OTEL_* sent %d trace requests", n)
	}
}
