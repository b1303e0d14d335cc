// Package model holds the GraphQL-only types: connections and the generated
// inputs and enums that have no domain counterpart.
package model

import "github.com/ipa-dev/ipa/internal/ipa"

// TaskConnection is one page of tasks; totalCount is resolved on demand with
// the same filter, so a page that does not ask for it never counts.
type TaskConnection struct {
	Edges    []*TaskEdge
	PageInfo *PageInfo
	Filter   ipa.TaskFilter
}

// EventConnection is one page of a task's events.
type EventConnection struct {
	Edges    []*EventEdge
	PageInfo *PageInfo
	TaskID   string
	Types    []string
}

// Node is any object with a global id. It is deliberately empty so the domain
// types satisfy it without knowing about GraphQL; the resolver only returns
// types that implement the schema's Node.
type Node interface{}
