// Package graph is the GraphQL front door: resolvers that parse arguments,
// call one service method and map the result. Generated code lives in
// graph/generated and graph/model/models_gen.go; regenerate with
// `go generate ./graph`.
package graph

import (
	"github.com/ipa-dev/ipa/internal/service"
)

// Resolver holds the dependencies of every resolver, and nothing else.
type Resolver struct {
	TaskService  *service.TaskService
	PodService   *service.PodService
	FeedService  *service.FeedService
	TokenService *service.TokenService
	// InstanceService lists the server instances; nil serves only this one
	// as unknown (tests building a bare resolver).
	InstanceService *service.InstanceService
	WebhookService  *service.WebhookService
	// ArtifactService lists and serves tasks' artifacts; nil: none.
	ArtifactService *service.ArtifactService
	// ConversationService holds messages to pods and their requests to
	// people.
	ConversationService *service.ConversationService
	// SchedulingService keeps concurrency limits and shows the queue.
	SchedulingService *service.SchedulingService
}
