package ipa

import "context"

// Role is what an actor may do. Each role includes the ones below it.
type Role string

const (
	RoleViewer   Role = "VIEWER"   // queries and subscriptions
	RoleOperator Role = "OPERATOR" // and all mutations
	RoleAdmin    Role = "ADMIN"    // and token management
)

func (r Role) rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r.rank() > 0 }

// Allows reports whether r includes the rights of need.
func (r Role) Allows(need Role) bool { return r.rank() >= need.rank() && need.rank() > 0 }

// Actor is who asked for something: a person or program with a token, the
// local user on a loopback server without tokens, or a runtime.
type Actor struct {
	ID   string
	Role Role
}

type ctxKey int

const (
	actorKey ctxKey = iota
	correlationKey
	causationKey
)

// WithActor returns a context carrying the authenticated actor.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey, a)
}

// ActorFrom returns the authenticated actor, or false when there is none.
func ActorFrom(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey).(Actor)
	return a, ok
}

// WithCorrelationID returns a context carrying the request's correlation id.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey, id)
}

// CorrelationID returns the correlation id of the request, or "".
func CorrelationID(ctx context.Context) string {
	s, _ := ctx.Value(correlationKey).(string)
	return s
}

// RequireRole returns EUNAUTHENTICATED when ctx has no actor and EFORBIDDEN when
// the actor's role does not include need.
func RequireRole(ctx context.Context, need Role) (Actor, error) {
	a, ok := ActorFrom(ctx)
	if !ok {
		return Actor{}, Errorf(EUNAUTHENTICATED, "", "Authentication required: send Authorization: Bearer <token>.")
	}
	if !a.Role.Allows(need) {
		return a, Errorf(EFORBIDDEN, "", "Role %s may not do this; it needs %s.", a.Role, need)
	}
	return a, nil
}
