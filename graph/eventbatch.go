package graph

import (
	"bytes"
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/ipa-dev/ipa/graph/scalar"
	"github.com/ipa-dev/ipa/internal/cohort"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// A batched stream (eventsStream, taskEventsStream) sends up to a thousand
// events per message, and catching up is a long run of full batches. Through
// gqlgen's executor each event of a batch is a goroutine and each field a
// field context, which made execution the largest cost of a catch-up,
// above reading the store. Most selections of a stream are plain fields
// of Event, which need none of that: batchEncoder writes such a selection's
// response directly, with the same marshalers the generated code uses, so
// the bytes are the ones gqlgen would write. Any other selection —
// fragments, directives, a field this encoder does not know — goes through
// gqlgen as before.

// maxEncodedBatch bounds what the encoder writes: a larger response is left
// to gqlgen, whose response limit (package httpserver) refuses it with an
// error. It is below that limit, so every response encoded here passes it.
const maxEncodedBatch = 8 << 20

// eventFieldWriters write one field of an Event as the generated code
// does; false: gqlgen must answer (it reports the error).
var eventFieldWriters = map[string]func(b *bytes.Buffer, e *ipa.Event) bool{
	"id":      func(b *bytes.Buffer, e *ipa.Event) bool { graphql.MarshalID(e.ID).MarshalGQL(b); return true },
	"taskId":  func(b *bytes.Buffer, e *ipa.Event) bool { graphql.MarshalID(e.TaskID).MarshalGQL(b); return true },
	"version": func(b *bytes.Buffer, e *ipa.Event) bool { graphql.MarshalInt64(e.Version).MarshalGQL(b); return true },
	"position": func(b *bytes.Buffer, e *ipa.Event) bool {
		graphql.MarshalString(e.PositionString()).MarshalGQL(b)
		return true
	},
	"type": func(b *bytes.Buffer, e *ipa.Event) bool { graphql.MarshalString(e.Type).MarshalGQL(b); return true },
	"data": func(b *bytes.Buffer, e *ipa.Event) bool {
		m := scalar.MarshalJSON(e.Data)
		if e.Data == nil || m == graphql.Null {
			return false
		}
		m.MarshalGQL(b)
		return true
	},
	"actorId":       func(b *bytes.Buffer, e *ipa.Event) bool { writeOptionalString(b, e.ActorIDOrNil()); return true },
	"correlationId": func(b *bytes.Buffer, e *ipa.Event) bool { writeOptionalString(b, e.CorrelationIDOrNil()); return true },
	"causationId":   func(b *bytes.Buffer, e *ipa.Event) bool { writeOptionalString(b, e.CausationIDOrNil()); return true },
	"occurredAt": func(b *bytes.Buffer, e *ipa.Event) bool {
		m := scalar.MarshalTime(e.OccurredAt)
		if m == graphql.Null {
			return false
		}
		m.MarshalGQL(b)
		return true
	},
	"__typename": func(b *bytes.Buffer, _ *ipa.Event) bool { graphql.MarshalString("Event").MarshalGQL(b); return true },
}

func writeOptionalString(b *bytes.Buffer, s *string) {
	if s == nil {
		graphql.Null.MarshalGQL(b)
		return
	}
	graphql.MarshalString(*s).MarshalGQL(b)
}

// batchEncoder writes the data of one message of a batched stream.
type batchEncoder struct {
	root   []byte // `{"<root field's key>":`
	keys   [][]byte
	fields []func(b *bytes.Buffer, e *ipa.Event) bool
}

// newBatchEncoder compiles the selection of the stream field being resolved
// in ctx, or returns nil when gqlgen must execute it.
func newBatchEncoder(ctx context.Context) *batchEncoder {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || len(fc.Field.Directives) > 0 || len(fc.Field.Selections) == 0 {
		return nil
	}
	enc := &batchEncoder{root: quotedKey(fc.Field.Alias, '{')}
	seen := map[string]bool{}
	for _, sel := range fc.Field.Selections {
		f, ok := sel.(*ast.Field)
		if !ok || len(f.Directives) > 0 || len(f.Arguments) > 0 || len(f.SelectionSet) > 0 || seen[f.Alias] {
			return nil // fragments, directives, arguments, merged fields: gqlgen's
		}
		w, ok := eventFieldWriters[f.Name]
		if !ok {
			return nil
		}
		seen[f.Alias] = true
		sep := byte(',')
		if len(enc.keys) == 0 {
			sep = '{'
		}
		enc.keys = append(enc.keys, quotedKey(f.Alias, sep))
		enc.fields = append(enc.fields, w)
	}
	return enc
}

// quotedKey is sep, the key as gqlgen quotes it, and a colon.
func quotedKey(key string, sep byte) []byte {
	var b bytes.Buffer
	b.WriteByte(sep)
	graphql.MarshalString(key).MarshalGQL(&b)
	b.WriteByte(':')
	return b.Bytes()
}

// encode writes {"<root>":[{…},…]} for the batch; false: gqlgen must
// execute it.
func (enc *batchEncoder) encode(batch []*ipa.Event) ([]byte, bool) {
	var b bytes.Buffer
	b.Grow(len(enc.root) + 2 + len(batch)*256)
	b.Write(enc.root)
	b.WriteByte('[')
	for i, e := range batch {
		if e == nil {
			return nil, false
		}
		if i > 0 {
			b.WriteByte(',')
		}
		for j, w := range enc.fields {
			b.Write(enc.keys[j])
			if !w(&b, e) {
				return nil, false
			}
		}
		if len(enc.fields) > 0 {
			b.WriteByte('}')
		}
		if b.Len() > maxEncodedBatch {
			return nil, false
		}
	}
	b.WriteString("]}")
	return b.Bytes(), true
}

// tapBatches hands a batched stream to its cohort, with the encoder of its
// selection when it has one.
func tapBatches(ctx context.Context, ch <-chan []*ipa.Event, err error) (<-chan []*ipa.Event, error) {
	var encode func([]*ipa.Event) ([]byte, bool)
	if err == nil {
		if enc := newBatchEncoder(ctx); enc != nil {
			encode = enc.encode
		}
	}
	return cohort.TapEncoded(ctx, ch, err, encode)
}
