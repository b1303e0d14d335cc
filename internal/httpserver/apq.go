package httpserver

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// persistedQueries is gqlgen's automatic persisted queries (Apollo's
// protocol) with an LRU of PersistedQueries entries: a client sends the
// sha256 of its query in extensions.persistedQuery; an unknown hash answers
// PersistedQueryNotFound (code PERSISTED_QUERY_NOT_FOUND) and the client
// sends hash and query once. Over GET this keeps URLs short.
//
// gqlgen's other refusals (a hash that does not match the query, a version
// other than 1, a malformed extension) carry no code; they get
// BAD_USER_INPUT / INVALID_ARGUMENT here and keep their message, instead of
// being taken for an unreadable request.
type persistedQueries struct {
	extension.AutomaticPersistedQuery
}

func newPersistedQueries() persistedQueries {
	return persistedQueries{extension.AutomaticPersistedQuery{Cache: lru.New[string](PersistedQueries)}}
}

var _ interface {
	graphql.OperationParameterMutator
	graphql.HandlerExtension
} = persistedQueries{}

func (p persistedQueries) MutateOperationParameters(ctx context.Context, raw *graphql.RawParams) *gqlerror.Error {
	err := p.AutomaticPersistedQuery.MutateOperationParameters(ctx, raw)
	if err != nil && !hasCode(err) {
		if err.Extensions == nil {
			err.Extensions = map[string]any{}
		}
		err.Extensions["code"] = ipa.EINVALID
		err.Extensions["reason"] = ipa.ReasonInvalidArgument
	}
	return err
}
