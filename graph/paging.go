package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/ipa-dev/ipa/graph/model"
	"github.com/ipa-dev/ipa/internal/service"
)

// pageOf builds a page request from Relay arguments. `first` has a schema
// default of 100, so a query that names only `last` still receives a first:
// it counts as given only when the query wrote it (first and last together
// are refused by the service).
func pageOf(ctx context.Context, first *int, after *string, last *int, before *string) service.Page {
	if last != nil && !written(ctx, "first") {
		first = nil
	}
	return service.Page{First: first, After: after, Last: last, Before: before}
}

// written reports whether the current field's query wrote the argument,
// literally or as a variable the request supplied.
func written(ctx context.Context, name string) bool {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || fc.Field.Field == nil {
		return true
	}
	arg := fc.Field.Arguments.ForName(name)
	if arg == nil || arg.Value == nil {
		return false
	}
	if arg.Value.Kind == ast.Variable {
		oc := graphql.GetOperationContext(ctx)
		_, ok := oc.Variables[arg.Value.Raw]
		return ok
	}
	return true
}

func eventConnection(page service.EventList, taskID string, types []string) *model.EventConnection {
	conn := &model.EventConnection{TaskID: taskID, Types: types, PageInfo: pageInfo(page.Cursors, page.HasNextPage, page.HasPrevious)}
	conn.Edges = make([]*model.EventEdge, len(page.Events))
	for i := range page.Events {
		conn.Edges[i] = &model.EventEdge{Cursor: page.Cursors[i], Node: &page.Events[i]}
	}
	return conn
}
