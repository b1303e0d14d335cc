// Package webhook delivers the global event log to outbound HTTP endpoints,
// like Hasura's event triggers: each endpoint gets every event of its types
// in position order, at least once, signed per the Standard Webhooks
// convention (https://www.standardwebhooks.com).
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
)

// SecretPrefix starts every endpoint secret, as Standard Webhooks names it.
const SecretPrefix = "whsec_"

// secretBytes is the size of a new secret's key: Standard Webhooks asks for
// 24 to 64 bytes.
const secretBytes = 32

// NewSecret returns a fresh secret: whsec_ and the base64 of random bytes.
func NewSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// Sign returns the webhook-signature header value for one message:
// "v1," and the base64 HMAC-SHA256, keyed by the secret's bytes, of
// "id.timestamp.body". Returns an error for a secret that is not
// whsec_<base64>.
func Sign(secret, id string, timestamp int64, body []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(key) == 0 {
		return "", errors.New("webhook: secret is not whsec_<base64>")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// Verify reports whether the webhook-signature header value (one or more
// space-separated "v1,<sig>") holds a valid signature of the message. It is
// what a receiver runs; the tests use it.
func Verify(secret, id string, timestamp int64, body []byte, header string) bool {
	want, err := Sign(secret, id, timestamp, body)
	if err != nil {
		return false
	}
	for _, sig := range strings.Fields(header) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return true
		}
	}
	return false
}
