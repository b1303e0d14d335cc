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
