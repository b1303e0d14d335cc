// Package graph is the GraphQL front door: resolvers that parse arguments,
// call one manager method and map the result. Generated code lives in
// graph/generated and graph/model/models_gen.go; regenerate with
// `go generate ./graph`.
package graph

import (
	"github.com/ipa-dev/ipa/internal/manager"
)

// Resolver holds the dependencies of every resolver, and nothing else.
type Resolver struct {
	Manager *manager.Manager
}
