package httpserver

import (
	"context"
	"fmt"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// metrics counts GraphQL requests, their latency and their errors. The
// operation label is the operation type and its first root field (e.g.
// "query tasks"): names from the schema, so the label set stays bounded
// whatever clients name their operations.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	errors   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_graphql_requests_total", Help: "GraphQL operations, by operation.",
		}, []string{"operation"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ipa_graphql_request_duration_seconds", Help: "GraphQL operation latency, by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ipa_graphql_errors_total", Help: "GraphQL errors returned to clients, by code.",
		}, []string{"code"}),
	}
	reg.MustRegister(m.requests, m.latency, m.errors)
	return m
}

var (
	_ graphql.HandlerExtension     = (*metrics)(nil)
	_ graphql.OperationInterceptor = (*metrics)(nil)
	_ graphql.ResponseInterceptor  = (*metrics)(nil)
)

func (*metrics) ExtensionName() string                   { return "Metrics" }
func (*metrics) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptOperation counts a subscription once, when it starts; its events
// are not requests.
func (m *metrics) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if oc := graphql.GetOperationContext(ctx); isSubscription(oc) {
		m.requests.WithLabelValues(operationLabel(oc)).Inc()
	}
	return next(ctx)
}

// InterceptResponse adds the correlation id to the response of a query or
// mutation, times it and counts it. A subscription's events pass untouched:
// they are the hot path of every live feed, and the subscription's
// correlation id is in the X-Request-Id header of its request.
func (m *metrics) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	var oc *graphql.OperationContext
	if graphql.HasOperationContext(ctx) {
		oc = graphql.GetOperationContext(ctx)
		if isSubscription(oc) {
			return next(ctx)
		}
	}
	resp := next(ctx)
	if resp != nil {
		if resp.Extensions == nil {
			resp.Extensions = map[string]any{}
		}
		resp.Extensions["correlationId"] = ipa.CorrelationID(ctx)
	}
	if oc == nil {
		return resp
	}
	op := operationLabel(oc)
	m.requests.WithLabelValues(op).Inc()
	m.latency.WithLabelValues(op).Observe(time.Since(oc.Stats.OperationStart).Seconds())
	return resp
}

func isSubscription(oc *graphql.OperationContext) bool {
	return oc != nil && oc.Operation != nil && oc.Operation.Operation == ast.Subscription
}

func (m *metrics) countError(code any) {
	if m != nil {
		m.errors.WithLabelValues(fmt.Sprint(code)).Inc()
	}
}

func operationLabel(oc *graphql.OperationContext) string {
	if oc.Operation == nil {
		return "invalid"
	}
	kind := string(oc.Operation.Operation)
	for _, sel := range oc.Operation.SelectionSet {
		if f, ok := sel.(*ast.Field); ok {
			return kind + " " + f.Name
		}
	}
	return kind
}
