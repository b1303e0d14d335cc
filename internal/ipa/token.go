package ipa

import "time"

// Token is an API token as stored and listed; the secret itself is never
// stored, only its hash.
type Token struct {
	ID        string
	ActorID   string
	Role      Role
	Hash      string // hex SHA-256 of the secret
	CreatedAt time.Time
	RevokedAt *time.Time
	LastUsed  *time.Time
}

// TokenChangeKind says what happened to the tokens.
type TokenChangeKind string

const (
	// TokenCreated: a token was minted, so the anonymous door is shut.
	TokenCreated TokenChangeKind = "created"
	// TokenRevoked: the token TokenID no longer authenticates.
	TokenRevoked TokenChangeKind = "revoked"
	// LocalDoorReopened: an administrator reopened the anonymous door.
	LocalDoorReopened TokenChangeKind = "reopened"
)

// TokenChange is a committed change to the tokens.
type TokenChange struct {
	Kind    TokenChangeKind
	TokenID string // TokenCreated and TokenRevoked
}
