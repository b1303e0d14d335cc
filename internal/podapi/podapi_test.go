package podapi

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/ipa-dev/ipa/internal/ipa"
	pb "github.com/ipa-dev/ipa/internal/podapi/proto"
)

// fakeHost records what a runtime sent and applies the phase rules.
type fakeHost struct {
	mu     sync.Mutex
	phase  ipa.Phase
	events []AppendEventRequest
	output []OutputRequest
}

func (h *fakeHost) AppendEvent(_ context.Context, req AppendEventRequest) (AppendEventResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, req)
	return AppendEventResponse{Version: int64(len(h.events))}, nil
}

func (h *fakeHost) RequestPhase(_ context.Context, req PhaseRequest) (PhaseResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := ipa.CheckPhaseTransition(h.phase, ipa.Phase(req.To)); err != nil {
		return PhaseResponse{Phase: string(h.phase)}, err
	}
	h.phase = ipa.Phase(req.To)
	return PhaseResponse{Phase: string(h.phase)}, nil
}

func (h *fakeHost) Output(_ context.Context, req OutputRequest) (OutputResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.output = append(h.output, req)
	return OutputResponse{}, nil
}

func (h *fakeHost) snapshot() ([]AppendEventRequest, []OutputRequest, ipa.Phase) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]AppendEventRequest(nil), h.events...), append([]OutputRequest(nil), h.output...), h.phase
}

// fakeRuntime records calls and hands its Host to the test.
type fakeRuntime struct {
	mu          sync.Mutex
	start       StartRequest
	host        Host
	stop        StopRequest
	hadDeadline bool
	startErr    error
	block       bool // State blocks until its context ends
}

func (r *fakeRuntime) Start(_ context.Context, req StartRequest) (StartResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.startErr != nil {
		return StartResponse{}, r.startErr
	}
	r.start, r.host = req, req.Host
	return StartResponse{}, nil
}

func (r *fakeRuntime) Attach(context.Context, AttachRequest) (AttachResponse, error) {
	return AttachResponse{}, nil
}

func (r *fakeRuntime) State(ctx context.Context, _ StateRequest) (StateResponse, error) {
	_, ok := ctx.Deadline()
	r.mu.Lock()
	r.hadDeadline = ok
	block := r.block
	r.mu.Unlock()
	if block {
		<-ctx.Done()
		return StateResponse{}, ctx.Err()
	}
	return StateResponse{TaskID: r.start.TaskID, Phase: "PLANNING", WantedPhase: "DEVELOPMENT", Progress: 0.5, Live: []byte(`{"step":2}`), Message: "working", Running: true}, nil
}

func (r *fakeRuntime) Stop(_ context.Context, req StopRequest) (StopResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stop = req
	return StopResponse{Forced: true}, nil
}

func (r *fakeRuntime) Health(context.Context, HealthRequest) (HealthResponse, error) {
	return HealthResponse{Healthy: true, Message: "ok"}, nil
}

func (r *fakeRuntime) getHost() Host {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.host
}

type bundle struct {
	rt     Runtime // host side
	impl   *fakeRuntime
	server *plugin.GRPCServer
	client *plugin.GRPCClient
}

func setup(t *testing.T) bundle {
	t.Helper()
	impl := &fakeRuntime{}
	client, server := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{PluginName: &RuntimePlugin{Impl: impl}})
	t.Cleanup(func() { _ = client.Close() }) // Close shuts the server down too
	raw, err := client.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return bundle{rt: raw.(Runtime), impl: impl, server: server, client: client}
}

func start(t *testing.T, b bundle, host Host) {
	t.Helper()
	_, err := b.rt.Start(context.Background(), StartRequest{
		TaskID: "task-1", Title: "T", Description: "D", RuntimeConfig: []byte(`{"a":1}`), Attempt: 2, WorkDir: "/tmp/w", Host: host,
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
}

func TestAdapters(t *testing.T) {
	t.Run("StartStateStopHealth", func(t *testing.T) {
		b := setup(t)
		start(t, b, &fakeHost{phase: ipa.PhaseSpecClarification})
		got := b.impl.start
		if got.TaskID != "task-1" || got.Title != "T" || got.Description != "D" || string(got.RuntimeConfig) != `{"a":1}` || got.Attempt != 2 || got.WorkDir != "/tmp/w" || got.Host == nil {
			t.Fatalf("plugin got %+v", got)
		}
		st, err := b.rt.State(context.Background(), StateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if st.TaskID != "task-1" || st.Phase != "PLANNING" || st.WantedPhase != "DEVELOPMENT" || st.Progress != 0.5 || string(st.Live) != `{"step":2}` || !st.Running || st.Message != "working" {
			t.Fatalf("state %+v", st)
		}
		deadline := time.Now().Add(3 * time.Second).Truncate(time.Microsecond)
		sr, err := b.rt.Stop(context.Background(), StopRequest{Deadline: deadline, Reason: "bye"})
		if err != nil || !sr.Forced {
			t.Fatalf("Stop: %+v %v", sr, err)
		}
		if !b.impl.stop.Deadline.Equal(deadline) || b.impl.stop.Reason != "bye" {
			t.Fatalf("plugin got stop %+v", b.impl.stop)
		}
		hr, err := b.rt.Health(context.Background(), HealthRequest{})
		if err != nil || !hr.Healthy || hr.Message != "ok" {
			t.Fatalf("Health: %+v %v", hr, err)
		}
	})

	t.Run("HostCallbacksReachHost", func(t *testing.T) {
		b := setup(t)
		host := &fakeHost{phase: ipa.PhaseSpecClarification}
		start(t, b, host)
		ph := b.impl.getHost()
		ctx := context.Background()
		if r, err := ph.AppendEvent(ctx, AppendEventRequest{Type: "runtime.demo.step", Data: []byte(`{"n":1}`)}); err != nil || r.Version != 1 {
			t.Fatalf("AppendEvent: %+v %v", r, err)
		}
		if r, err := ph.RequestPhase(ctx, PhaseRequest{To: "PLANNING", Note: "go"}); err != nil || r.Phase != "PLANNING" {
			t.Fatalf("RequestPhase: %+v %v", r, err)
		}
		if _, err := ph.Output(ctx, OutputRequest{Lines: []OutputLine{{Stream: StreamStdout, Text: "hi"}}, Dropped: 4}); err != nil {
			t.Fatal(err)
		}
		events, output, phase := host.snapshot()
		if len(events) != 1 || events[0].Type != "runtime.demo.step" || string(events[0].Data) != `{"n":1}` || phase != ipa.PhasePlanning {
			t.Fatalf("host saw %+v phase %s", events, phase)
		}
		if len(output) != 1 || output[0].Lines[0].Text != "hi" || output[0].Dropped != 4 {
			t.Fatalf("host saw output %+v", output)
		}
	})

	t.Run("RefusedPhaseCarriesErrorAndPhase", func(t *testing.T) {
		b := setup(t)
		start(t, b, &fakeHost{phase: ipa.PhaseReview})
		r, err := b.impl.getHost().RequestPhase(context.Background(), PhaseRequest{To: "SPEC_CLARIFICATION"})
		if ipa.ErrorCode(err) != ipa.ECONFLICT || ipa.ErrorReason(err) != ipa.ReasonInvalidTransition {
			t.Fatalf("want CONFLICT/INVALID_TRANSITION, got %v", err)
		}
		if r.Phase != "REVIEW" {
			t.Fatalf("want current phase REVIEW, got %q", r.Phase)
		}
	})

	t.Run("NonRuntimeEventRefused", func(t *testing.T) {
		b := setup(t)
		host := &fakeHost{}
		start(t, b, host)
		_, err := b.impl.getHost().AppendEvent(context.Background(), AppendEventRequest{Type: ipa.EventTaskCompleted})
		if ipa.ErrorCode(err) != ipa.EINVALID {
			t.Fatalf("want EINVALID, got %v", err)
		}
		if events, _, _ := host.snapshot(); len(events) != 0 {
			t.Fatalf("host saw %+v", events)
		}
	})

	t.Run("DomainErrorFromPlugin", func(t *testing.T) {
		b := setup(t)
		b.impl.startErr = ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "stepMs must be at least 10")
		_, err := b.rt.Start(context.Background(), StartRequest{TaskID: "t", Host: &fakeHost{}})
		var e *ipa.Error
		if !errors.As(err, &e) || e.Code != ipa.EINVALID || e.Message != "stepMs must be at least 10" {
			t.Fatalf("got %v", err)
		}
		if errors.Is(err, ErrRuntimeUnavailable) {
			t.Fatal("a domain error is not unavailability")
		}
	})

	t.Run("DefaultDeadlineApplied", func(t *testing.T) {
		b := setup(t)
		if _, err := b.rt.State(context.Background(), StateRequest{}); err != nil {
			t.Fatal(err)
		}
		if !b.impl.hadDeadline {
			t.Fatal("a call without a deadline reached the plugin without one")
		}
	})

	t.Run("HungPluginTimesOut", func(t *testing.T) {
		b := setup(t)
		b.impl.block = true
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		began := time.Now()
		_, err := b.rt.State(ctx, StateRequest{})
		if !errors.Is(err, ErrRuntimeUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want unavailable+deadline, got %v", err)
		}
		if time.Since(began) > 2*time.Second {
			t.Fatal("took too long")
		}
	})

	t.Run("CallerCancelIsNotUnavailability", func(t *testing.T) {
		b := setup(t)
		b.impl.block = true
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := b.rt.State(ctx, StateRequest{})
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrRuntimeUnavailable) {
			t.Fatalf("want context.Canceled, got %v", err)
		}
	})

	t.Run("DeadPluginIsUnavailable", func(t *testing.T) {
		b := setup(t)
		b.server.Stop()
		for _, call := range []func() error{
			func() error { _, err := b.rt.State(context.Background(), StateRequest{}); return err },
			func() error { _, err := b.rt.Health(context.Background(), HealthRequest{}); return err },
			func() error { _, err := b.rt.Stop(context.Background(), StopRequest{}); return err },
			func() error {
				_, err := b.rt.Start(context.Background(), StartRequest{TaskID: "t", Host: &fakeHost{}})
				return err
			},
		} {
			began := time.Now()
			if err := call(); !errors.Is(err, ErrRuntimeUnavailable) {
				t.Fatalf("want ErrRuntimeUnavailable, got %v", err)
			}
			if time.Since(began) > DefaultCallTimeout+time.Second {
				t.Fatal("a dead plugin made a call hang")
			}
		}
		_ = b.client.Close()
		if _, err := b.rt.State(context.Background(), StateRequest{}); !errors.Is(err, ErrRuntimeUnavailable) {
			t.Fatalf("closed client: want ErrRuntimeUnavailable, got %v", err)
		}
	})

	t.Run("AttachRebindsHost", func(t *testing.T) {
		b := setup(t)
		first := &fakeHost{}
		start(t, b, first)
		ph := b.impl.getHost()
		second := &fakeHost{}
		if _, err := b.rt.Attach(context.Background(), AttachRequest{TaskID: "other", Host: second}); ipa.ErrorCode(err) != ipa.ECONFLICT {
			t.Fatalf("attach to the wrong task: want CONFLICT, got %v", err)
		}
		r, err := b.rt.Attach(context.Background(), AttachRequest{TaskID: "task-1", Host: second})
		if err != nil || r.TaskID != "task-1" {
			t.Fatalf("Attach: %+v %v", r, err)
		}
		if _, err := ph.AppendEvent(context.Background(), AppendEventRequest{Type: "runtime.x"}); err != nil {
			t.Fatal(err)
		}
		if e1, _, _ := first.snapshot(); len(e1) != 0 {
			t.Fatal("old host still reached after Attach")
		}
		if e2, _, _ := second.snapshot(); len(e2) != 1 {
			t.Fatal("new host not reached after Attach")
		}
	})
}

// TestHostServerRefusesOtherTask proves the host side of the host service
// refuses a request naming another task, whatever the plugin sends.
func TestHostServerRefusesOtherTask(t *testing.T) {
	host := &fakeHost{phase: ipa.PhaseSpecClarification}
	conn, server := plugin.TestGRPCConn(t, func(s *grpc.Server) {
		pb.RegisterHostServer(s, &hostServer{impl: host, taskID: "task-A"})
	})
	t.Cleanup(func() { _ = conn.Close(); server.Stop() })
	c := pb.NewHostClient(conn)
	ctx := context.Background()

	_, err := c.AppendEvent(ctx, &pb.AppendEventRequest{TaskId: "task-B", Type: "runtime.evil"})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("AppendEvent for another task: want PermissionDenied, got %v", err)
	}
	_, err = c.RequestPhase(ctx, &pb.PhaseRequest{TaskId: "task-B", To: "PLANNING"})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("RequestPhase for another task: want PermissionDenied, got %v", err)
	}
	_, err = c.Output(ctx, &pb.OutputRequest{TaskId: "task-B", Lines: []*pb.OutputLine{{Stream: "stdout", Text: "x"}}})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Output for another task: want PermissionDenied, got %v", err)
	}
	events, output, phase := host.snapshot()
	if len(events) != 0 || len(output) != 0 || phase != ipa.PhaseSpecClarification {
		t.Fatalf("a request for another task reached the host: %+v %+v %s", events, output, phase)
	}
	// Its own task (or none named) goes through.
	if _, err := c.AppendEvent(ctx, &pb.AppendEventRequest{TaskId: "task-A", Type: "runtime.ok"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AppendEvent(ctx, &pb.AppendEventRequest{Type: "runtime.ok"}); err != nil {
		t.Fatal(err)
	}
}

func TestConnWatch(t *testing.T) {
	t.Run("FiresWithNoHost", func(t *testing.T) {
		fired := make(chan struct{})
		w := newConnWatch(50*time.Millisecond, func() { close(fired) })
		defer w.close()
		select {
		case <-fired:
		case <-time.After(2 * time.Second):
			t.Fatal("orphan watch did not fire")
		}
	})
	t.Run("QuietWhileConnectedFiresAfterLoss", func(t *testing.T) {
		fired := make(chan struct{})
		w := newConnWatch(100*time.Millisecond, func() { close(fired) })
		defer w.close()
		w.HandleConn(context.Background(), &statsConnBegin)
		select {
		case <-fired:
			t.Fatal("fired while a host is connected")
		case <-time.After(300 * time.Millisecond):
		}
		w.HandleConn(context.Background(), &statsConnEnd)
		select {
		case <-fired:
		case <-time.After(2 * time.Second):
			t.Fatal("did not fire after the host left")
		}
	})
	// A host that was polling and went silent (stopped, cut off) keeps its
	// connection open: the watch fires all the same.
	t.Run("FiresWhenConnectedHostGoesSilent", func(t *testing.T) {
		fired := make(chan struct{})
		w := newConnWatch(100*time.Millisecond, func() { close(fired) })
		defer w.close()
		w.HandleConn(context.Background(), &statsConnBegin)
		call := context.WithValue(context.Background(), runtimeCallKey{}, true)
		for range 6 { // polling: quiet
			w.HandleRPC(call, &stats.Begin{})
			w.HandleRPC(call, &stats.End{})
			select {
			case <-fired:
				t.Fatal("fired while the host polls")
			case <-time.After(40 * time.Millisecond):
			}
		}
		select {
		case <-fired:
		case <-time.After(2 * time.Second):
			t.Fatal("did not fire after the host went silent")
		}
	})
}

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("alpha", "#!/bin/sh\necho a\n", 0o755)
	write("beta", "#!/bin/sh\necho b\n", 0o755)
	write("notes.txt", "not a plugin", 0o644)
	write(".hidden", "#!/bin/sh\n", 0o755)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}

	t.Run("AllowAll", func(t *testing.T) {
		got, err := Discover(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Name != "alpha" || got[1].Name != "beta" || got[0].Path != filepath.Join(dir, "alpha") || len(got[0].SHA256) != 64 {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("ChecksumRefusal", func(t *testing.T) {
		all, _ := Discover(dir, nil)
		got, err := Discover(dir, map[string]string{"alpha": all[0].SHA256, "beta": strings.Repeat("0", 64)})
		if err == nil || !strings.Contains(err.Error(), "beta") || !strings.Contains(err.Error(), "checksum mismatch") {
			t.Fatalf("want a checksum error naming beta, got %v", err)
		}
		if len(got) != 1 || got[0].Name != "alpha" {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("NotAllowedSkipped", func(t *testing.T) {
		all, _ := Discover(dir, nil)
		got, err := Discover(dir, map[string]string{"alpha": all[0].SHA256})
		if err != nil || len(got) != 1 {
			t.Fatalf("got %+v %v", got, err)
		}
	})
	t.Run("MissingDir", func(t *testing.T) {
		got, err := Discover(filepath.Join(dir, "nope"), nil)
		if err != nil || got != nil {
			t.Fatalf("got %+v %v", got, err)
		}
	})
}

// TestSilenceGraceFitsTheLease checks the arithmetic the lease relies on: a
// host paused for 0.7 of the TTL (its poll every grace/16 just missed) keeps
// its pods, and a dead host's plugins have stopped their work before 0.85 of
// the TTL, a default heartbeat interval (TTL/5) short of a takeover.
func TestSilenceGraceFitsTheLease(t *testing.T) {
	for _, ttl := range []time.Duration{3 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute} {
		g := SilenceGrace(ttl)
		if paused := ttl*7/10 + g/16; paused >= g {
			t.Errorf("ttl %s: a pause of 0.7 TTL after a poll (%s of silence) reaches the grace %s", ttl, paused, g)
		}
		if stopped := g + silenceTick(g) + orphanStop(g); stopped >= ttl*85/100 {
			t.Errorf("ttl %s: an orphan's work ends %s after the last call, not before 0.85 TTL", ttl, stopped)
		}
	}
}
