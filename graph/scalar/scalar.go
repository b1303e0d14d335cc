// Package scalar marshals the API's custom scalars, Time and JSON.
package scalar

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// MarshalTime writes t as RFC 3339 with nanoseconds, in UTC.
func MarshalTime(t time.Time) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		_, _ = io.WriteString(w, strconv.Quote(t.UTC().Format(time.RFC3339Nano)))
	})
}

// UnmarshalTime reads an RFC 3339 string (any offset, fractional seconds
// optional) and returns it in UTC. Returns an EINVALID *ipa.Error for
// anything else, so the client sees BAD_USER_INPUT, not an internal error.
func UnmarshalTime(v any) (time.Time, error) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Time must be an RFC 3339 string.")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Time must be RFC 3339, e.g. 2026-01-02T15:04:05Z.")
	}
	return t.UTC(), nil
}

// MarshalJSON writes a stored JSON value compactly; empty means null.
// Values written by this server are compact already and are written as they
// are; PostgreSQL hands jsonb back with spaces, which are taken out, so a
// value has the same bytes whichever database, transport or path (live or
// read back) it came through.
func MarshalJSON(raw json.RawMessage) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		if len(raw) == 0 {
			_, _ = io.WriteString(w, "null")
			return
		}
		if bytes.IndexAny(raw, " \t\n\r") < 0 {
			_, _ = w.Write(raw)
			return
		}
		var b bytes.Buffer
		if json.Compact(&b, raw) != nil {
			_, _ = w.Write(raw) // not JSON: the store never holds such a value
			return
		}
		_, _ = w.Write(b.Bytes())
	})
}

// UnmarshalJSON accepts any JSON value from a query variable or an inline
// literal and returns its compact encoding.
func UnmarshalJSON(v any) (json.RawMessage, error) {
	if n, ok := v.(json.Number); ok {
		return json.RawMessage(n.String()), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "JSON value cannot be encoded.")
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return nil, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "JSON value cannot be encoded.")
	}
	return out.Bytes(), nil
}
