package store

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ipa-dev/ipa/internal/tracing"
)

// startTxSpan starts the span of one write transaction. A batch commits the
// writes of several callers at once: the span is a child of the first
// caller that is in a trace and links the others, so each caller's trace
// shows the transaction its write was in, with the batch size. Transactions
// of no traced caller make no span.
func (s *Store) startTxSpan(batch []*writeReq) trace.Span {
	if !tracing.On() {
		return trace.SpanFromContext(context.Background()) // no-op
	}
	var parent trace.SpanContext
	var links []trace.Link
	for _, r := range batch {
		sc := trace.SpanContextFromContext(r.ctx)
		switch {
		case !sc.IsValid():
		case !parent.IsValid():
			parent = sc
		default:
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	if !parent.IsValid() {
		// Outside any trace (a sweep, a poll): no trace of its own.
		return trace.SpanFromContext(context.Background())
	}
	_, span := tracing.Tracer().Start(trace.ContextWithSpanContext(context.Background(), parent), "store.transaction",
		trace.WithSpanKind(trace.SpanKindClient), trace.WithLinks(links...),
		trace.WithAttributes(attribute.String("db.system.name", s.dbSystem()), attribute.Int("ipa.store.batch_size", len(batch))))
	return span
}

func (s *Store) dbSystem() string {
	if s.postgres() {
		return "postgresql"
	}
	return "sqlite"
}

// endSpan ends span with err as its status.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "transaction failed")
	}
	span.End()
}
