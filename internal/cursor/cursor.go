// Package cursor makes opaque, tamper-evident pagination cursors: a JSON
// payload and an HMAC-SHA256 tag, base64url encoded. A cursor also carries a
// fingerprint of the query it came from, so a cursor from one filter or order
// cannot be replayed against another.
package cursor

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
)

// tagSize is the length of the truncated HMAC tag: 128 bits is plenty to make
// forging infeasible while keeping cursors short.
const tagSize = 16

// maxCursorLen bounds what Decode will look at, so a huge string is rejected
// before any work is done.
const maxCursorLen = 2048

// ErrInvalid is returned for a cursor that is malformed, forged, or from
// another query.
var ErrInvalid = errors.New("cursor: invalid")

// Codec signs and verifies cursors with one secret key.
type Codec struct {
	key []byte
}

// New returns a codec for the key (at least 16 bytes).
func New(key []byte) *Codec {
	if len(key) < 16 {
		panic("cursor: key shorter than 16 bytes")
	}
	return &Codec{key: append([]byte(nil), key...)}
}

type envelope struct {
	Query string          `json:"q,omitempty"`
	Value json.RawMessage `json:"v"`
}

// Encode returns the cursor for v (marshalled to JSON) within query, an
// opaque string identifying the query's shape (filter and order).
func (c *Codec) Encode(query string, v any) (string, error) {
	val, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(envelope{Query: query, Value: val})
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(append(body, c.tag(body)...)), nil
}

// Decode verifies s and unmarshals its value into v. Returns ErrInvalid when s
// is not a cursor this codec made for the same query.
func (c *Codec) Decode(query, s string, v any) error {
	if len(s) == 0 || len(s) > maxCursorLen {
		return ErrInvalid
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(raw) <= tagSize {
		return ErrInvalid
	}
	body, tag := raw[:len(raw)-tagSize], raw[len(raw)-tagSize:]
	if !hmac.Equal(tag, c.tag(body)) {
		return ErrInvalid
	}
	var env envelope
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&env); err != nil || env.Query != query {
		return ErrInvalid
	}
	if err := json.Unmarshal(env.Value, v); err != nil {
		return ErrInvalid
	}
	return nil
}

func (c *Codec) tag(body []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write(body)
	return m.Sum(nil)[:tagSize]
}
