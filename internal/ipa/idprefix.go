package ipa

import "strings"

// nilUUID and maxUUID are the smallest and largest ids in canonical form.
const (
	nilUUID = "00000000-0000-0000-0000-000000000000"
	maxUUID = "ffffffff-ffff-ffff-ffff-ffffffffffff"
)

// IDPrefixRange returns the smallest and largest canonical ids that start
// with prefix (case-insensitive, dashes where the canonical form has them),
// so a prefix search is a range on the id index. ok is false for a prefix
// that no canonical id can start with: too long, a non-hex digit, or a
// misplaced dash.
func IDPrefixRange(prefix string) (lo, hi string, ok bool) {
	p := strings.ToLower(prefix)
	if len(p) > len(nilUUID) {
		return "", "", false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if nilUUID[i] == '-' {
			if c != '-' {
				return "", "", false
			}
			continue
		}
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", "", false
		}
	}
	return p + nilUUID[len(p):], p + maxUUID[len(p):], true
}

// HasIDPrefix reports whether id starts with prefix, as IDPrefixRange
// means it.
func HasIDPrefix(id, prefix string) bool {
	return strings.HasPrefix(id, strings.ToLower(prefix))
}
