package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// presentError maps every error to the contract: a domain *ipa.Error keeps
// its code, reason, message and extensions; gqlgen's own parse, validation
// and limit errors keep their codes; anything else becomes
// INTERNAL_SERVER_ERROR with a generic message and is logged with the
// correlation id. Nothing internal (SQL, paths, stacks) reaches a client.
func presentError(log *slog.Logger, m *metrics) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		gerr := graphql.DefaultErrorPresenter(ctx, err)
		var domain *ipa.Error
		switch {
		case errors.As(err, &domain):
			gerr.Message = domain.Message
			gerr.Extensions = map[string]any{"code": domain.Code}
			if domain.Reason != "" {
				gerr.Extensions["reason"] = domain.Reason
			}
			for k, v := range domain.Extensions {
				gerr.Extensions[k] = v
			}
		case hasCode(gerr) && gerr.Err == nil:
			// Parse, validation and limit errors made by gqlgen itself.
		case gerr.Err == nil && len(gerr.Path) == 0:
			// A request gqlgen's transport could not read or decode (not
			// JSON, wrong shapes): the client's fault. Its message may echo
			// the whole body, so it is replaced.
			gerr.Message = "The request is not a GraphQL request: send JSON like {\"query\": \"…\", \"variables\": {…}}."
			gerr.Extensions = map[string]any{"code": ipa.EINVALID, "reason": ipa.ReasonInvalidArgument}
		default:
			log.ErrorContext(ctx, "internal error", "err", err, "correlation_id", ipa.CorrelationID(ctx))
			gerr.Message = "Internal server error."
			gerr.Extensions = map[string]any{"code": ipa.EINTERNAL}
		}
		gerr.Extensions["correlationId"] = ipa.CorrelationID(ctx)
		m.countError(gerr.Extensions["code"])
		return gerr
	}
}

func hasCode(e *gqlerror.Error) bool {
	_, ok := e.Extensions["code"]
	return ok
}

// recoverPanic logs a resolver panic with its stack and correlation id and
// answers with an internal error.
func recoverPanic(log *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in resolver", "panic", fmt.Sprint(p), "stack", string(debug.Stack()),
			"correlation_id", ipa.CorrelationID(ctx))
		return errors.New("internal panic")
	}
}
