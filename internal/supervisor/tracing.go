package supervisor

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ipa-dev/ipa/internal/tracing"
)

// Spans of the pod lifecycle: pod.start (from launching the plugin to
// pod_started recorded, with the gRPC Start call and the store's
// transactions inside), pod.crash (the crash recorded and the policy
// applied), pod.restart (a restart after its back-off, holding the
// pod.start of the new run) and pod.stop. A start asked for through the API
// is a child of that request's span; a crash starts a trace of its own,
// linked to the start of the run that crashed, and the restarts it causes
// are its children.

// startSpan starts a lifecycle span named name under parent's span.
func startSpan(parent context.Context, name, taskID, runtime string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	attrs = append(attrs, attribute.String("ipa.task.id", taskID), attribute.String("ipa.runtime", runtime))
	return tracing.Tracer().Start(parent, name, trace.WithAttributes(attrs...))
}

// endSpan ends span with err (when not nil) as its status.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// withSpanOf returns ctx carrying the span context sc (from another
// goroutine or an earlier step) as the parent of the spans started under it.
func withSpanOf(ctx context.Context, sc trace.SpanContext) context.Context {
	if !sc.IsValid() {
		return ctx
	}
	return trace.ContextWithSpanContext(ctx, sc)
}
