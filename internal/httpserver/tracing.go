package httpserver

import (
	"context"
	"net/http"

	"github.com/99designs/gqlgen/graphql"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/ipa-dev/ipa/internal/tracing"
)

// withTraceContext continues the caller's trace when the request carries
// W3C trace context (traceparent). With tracing off, this and the
// operation spans below cost one atomic load (see BenchmarkSpan).
func withTraceContext(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !tracing.On() {
			next.ServeHTTP(w, r)
			return
		}
		ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// graphqlTracing gives each query and mutation a span named after the
// operation as the metrics label it ("mutation createTask"), never the raw
// query; the resolvers run inside it, so store transactions and pod steps
// are its children. A subscription gets one span for its start.
type graphqlTracing struct{}

var (
	_ graphql.HandlerExtension     = graphqlTracing{}
	_ graphql.OperationInterceptor = graphqlTracing{}
	_ graphql.ResponseInterceptor  = graphqlTracing{}
)

func (graphqlTracing) ExtensionName() string                   { return "Tracing" }
func (graphqlTracing) Validate(graphql.ExecutableSchema) error { return nil }

func (graphqlTracing) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if !tracing.On() {
		return next(ctx)
	}
	if oc := graphql.GetOperationContext(ctx); isSubscription(oc) {
		ctx, span := startOperationSpan(ctx, oc)
		defer span.End()
		return next(ctx)
	}
	return next(ctx)
}

func (graphqlTracing) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	if !tracing.On() || !graphql.HasOperationContext(ctx) {
		return next(ctx)
	}
	oc := graphql.GetOperationContext(ctx)
	if isSubscription(oc) {
		return next(ctx)
	}
	ctx, span := startOperationSpan(ctx, oc)
	defer span.End()
	resp := next(ctx)
	if resp != nil && len(resp.Errors) > 0 {
		span.SetStatus(codes.Error, resp.Errors[0].Message)
	}
	return resp
}

func startOperationSpan(ctx context.Context, oc *graphql.OperationContext) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{attribute.String("graphql.operation.name", oc.OperationName)}
	if oc.Operation != nil {
		attrs = append(attrs, attribute.String("graphql.operation.type", string(oc.Operation.Operation)))
	}
	return tracing.Tracer().Start(ctx, "graphql "+operationLabel(oc),
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
}
