package graph

import (
	"github.com/ipa-dev/ipa/graph/model"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/service"
)

// nullWhenNotFound turns "no such task" into a null result, as the task and
// node queries promise; other errors pass through.
func nullWhenNotFound(t *ipa.Task, err error) (*ipa.Task, error) {
	if ipa.ErrorCode(err) == ipa.ENOTFOUND {
		return nil, nil
	}
	return t, err
}

func taskPayload(t *ipa.Task, err error) (*model.TaskPayload, error) {
	if err != nil {
		return nil, err
	}
	return &model.TaskPayload{Task: t}, nil
}

func version(v *int) *int64 {
	if v == nil {
		return nil
	}
	x := int64(*v)
	return &x
}

// batchSizeOf is the stream's batchSize; an explicit null means the default.
func batchSizeOf(n *int) int {
	if n == nil {
		return service.DefaultStreamBatch
	}
	return *n
}

func filterOf(f *ipa.TaskFilter) ipa.TaskFilter {
	if f == nil {
		return ipa.TaskFilter{}
	}
	return *f
}

func orderOf(o *model.TaskOrder) ipa.TaskOrder {
	if o == nil {
		return ipa.DefaultTaskOrder
	}
	return ipa.TaskOrder{Field: ipa.TaskOrderField(o.Field), Descending: o.Direction == model.OrderDirectionDesc}
}

func pageInfo(cursors []string, hasNext, hasPrevious bool) *model.PageInfo {
	p := &model.PageInfo{HasNextPage: hasNext, HasPreviousPage: hasPrevious}
	if n := len(cursors); n > 0 {
		p.StartCursor, p.EndCursor = &cursors[0], &cursors[n-1]
	}
	return p
}

// ptrs returns pointers to the elements of list, as gqlgen's generated
// resolvers want lists of objects.
func ptrs[T any](list []T) []*T {
	out := make([]*T, len(list))
	for i := range list {
		out[i] = &list[i]
	}
	return out
}

// taskConnection maps a page of tasks listed with filter.
func taskConnection(filter ipa.TaskFilter, page service.TaskList) *model.TaskConnection {
	conn := &model.TaskConnection{Filter: filter, PageInfo: pageInfo(page.Cursors, page.HasNextPage, page.HasPrevious)}
	conn.Edges = make([]*model.TaskEdge, len(page.Tasks))
	for i, t := range page.Tasks {
		conn.Edges[i] = &model.TaskEdge{Cursor: page.Cursors[i], Node: t}
	}
	return conn
}
