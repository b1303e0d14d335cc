// Package securitytest keeps every attack tried against ipa as a test: each
// finding of the review that preceded sharing a server with a team is
// replayed here exactly as the attacker ran it, against a real server over
// real sockets, so a regression shows up as the attack working again. The
// detailed variants of each fix stay beside the code they test; this package
// holds the attacks themselves and FuzzGraphQLRequest, which feeds arbitrary
// documents and variables through the real handler.
//
// It has no code of its own: only tests.
package securitytest
