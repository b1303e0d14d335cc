package httpserver

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// responseLimit replaces a response whose data is over max bytes with an
// error, so one request cannot make the server send an unbounded answer.
// The cost limit keeps such requests rare; this catches what its estimate
// cannot see, such as many large descriptions and metadata objects. The data
// is measured once marshalled, the only point where its size is known.
type responseLimit struct {
	max     int
	present graphql.ErrorPresenterFunc // the server's, so the error is coded and counted like any other
}

var (
	_ graphql.HandlerExtension    = responseLimit{}
	_ graphql.ResponseInterceptor = responseLimit{}
)

func (responseLimit) ExtensionName() string                   { return "ResponseLimit" }
func (responseLimit) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptResponse drops data over the limit and answers with an error.
func (l responseLimit) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	if resp == nil || len(resp.Data) <= l.max {
		return resp
	}
	msg := "The response would be %d bytes, over the limit of %d; ask for fewer items or fields."
	if graphql.HasOperationContext(ctx) {
		if op := graphql.GetOperationContext(ctx).Operation; op != nil && op.Operation == ast.Mutation {
			msg = "The response would be %d bytes, over the limit of %d; the mutation's changes were made, read them back with a smaller query."
		}
	}
	err := gqlerror.Errorf(msg, len(resp.Data), l.max)
	err.Extensions = map[string]any{"code": "COMPLEXITY_LIMIT_EXCEEDED"}
	if l.present != nil {
		err = l.present(ctx, err)
	}
	return &graphql.Response{Errors: gqlerror.List{err}, Extensions: resp.Extensions}
}
