package tracing

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// BenchmarkSpan is what one traced point (a request's trace context and
// its operation span) costs: off, as ipa runs without OTEL_* (the On guard
// the HTTP and store points check first), noop (OpenTelemetry's global
// no-op provider and propagator, what the pod lifecycle points go through
// when off), and on (the SDK recording, the export itself left out).
func BenchmarkSpan(b *testing.B) {
	ctx := context.Background()
	header := http.Header{"Content-Type": {"application/json"}}
	b.Run("off", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for i := 0; i < b.N; i++ {
			if On() {
				n++
			}
		}
		if n != 0 {
			b.Fatal("tracing is on")
		}
	})
	b.Run("noop", func(b *testing.B) {
		tracer := otel.GetTracerProvider().Tracer("bench")
		prop := otel.GetTextMapPropagator()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			c := prop.Extract(ctx, propagation.HeaderCarrier(header))
			_, span := tracer.Start(c, "graphql mutation createTask", trace.WithSpanKind(trace.SpanKindServer))
			span.End()
		}
	})
	b.Run("on", func(b *testing.B) {
		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(discard{exp})))
		defer tp.Shutdown(ctx)
		tracer := tp.Tracer("bench")
		prop := propagation.TraceContext{}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			c := prop.Extract(ctx, propagation.HeaderCarrier(header))
			_, span := tracer.Start(c, "graphql mutation createTask", trace.WithSpanKind(trace.SpanKindServer))
			span.End()
		}
	})
}

// discard is an exporter that keeps nothing.
type discard struct{ *tracetest.InMemoryExporter }

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
