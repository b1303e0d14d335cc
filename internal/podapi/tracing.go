package podapi

import (
	"context"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"

	"github.com/ipa-dev/ipa/internal/tracing"
)

// Trace context crosses the plugin boundary in gRPC metadata (W3C
// traceparent), through otelgrpc on both ends: the host's calls into the
// runtime carry the caller's span (pod.start → Runtime/Start), and the
// plugin's calls back into the Host carry what they were called under, so
// a runtime's host calls join the trace. On the host the handlers are
// installed only when tracing is on (nothing is sent otherwise); a plugin
// always propagates, which costs nothing when no context arrives, and
// exports spans of its own only when its OTEL_* environment says so.

//
// Calls only continue traces, never start one: a call made outside any span
// (the health and state polls, a demo's later steps) makes no span, so the
// traces hold lifecycle steps and not a trace per poll.

// hostDialOptions instrument the host's connection to a plugin.
func hostDialOptions() []grpc.DialOption {
	if !tracing.On() {
		return nil
	}
	return []grpc.DialOption{pluginDialOption()}
}

// hostServerOptions instrument the Host service the host serves to a plugin.
func hostServerOptions() []grpc.ServerOption {
	if !tracing.On() {
		return nil
	}
	return []grpc.ServerOption{pluginServerOption()}
}

// pluginTracing sets up the plugin process's side: W3C propagation always,
// an exporter when its environment enables one. Returns the shutdown.
func pluginTracing() func(context.Context) error {
	shutdown, err := tracing.Setup(context.Background(), "ipa-plugin")
	if err != nil {
		Logger().Warn("tracing not set up", "error", err)
		shutdown = func(context.Context) error { return nil }
	}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return shutdown
}

// pluginServerOption and pluginDialOption instrument a server and a client
// end (the plugin's, and the host's when tracing is on).
func pluginServerOption() grpc.ServerOption {
	return grpc.StatsHandler(continueOnly{Handler: otelgrpc.NewServerHandler(), traced: incomingTrace})
}

func pluginDialOption() grpc.DialOption {
	return grpc.WithStatsHandler(continueOnly{Handler: otelgrpc.NewClientHandler(), traced: outgoingTrace})
}

// continueOnly passes to Handler only the calls that are part of a trace.
type continueOnly struct {
	stats.Handler
	traced func(context.Context) bool
}

type untracedCall struct{}

func (h continueOnly) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if !h.traced(ctx) {
		return context.WithValue(ctx, untracedCall{}, true)
	}
	return h.Handler.TagRPC(ctx, info)
}

func (h continueOnly) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if ctx.Value(untracedCall{}) == nil {
		h.Handler.HandleRPC(ctx, s)
	}
}

// outgoingTrace: the caller is in a span.
func outgoingTrace(ctx context.Context) bool { return trace.SpanContextFromContext(ctx).IsValid() }

// incomingTrace: the call carries W3C trace context.
func incomingTrace(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get("traceparent")) > 0
}
