package httpserver_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// A batched stream's plain selections are encoded without gqlgen's
// executor (graph/eventbatch.go); the bytes must be the ones gqlgen writes.
// Each selection is read twice from the start: as it is, which the encoder
// answers, and with a fragment repeating one of its fields, which leaves
// the response as it was but only gqlgen executes.
func TestBatchEncodingMatchesExecution(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend)
		_, secret := b.Mint(t, "ada", ipa.RoleAdmin)
		admin := b.as(secret)
		tk := admin.Create(t, map[string]any{
			"title":       "\"quoted\" <b>&amp; \u2028 é 😀 \\ end",
			"description": strings.Repeat("long ", 50) + "\t tab",
			"metadata":    map[string]any{"line": "a\nb", "n": 1.5e3, "nested": map[string]any{"list": []any{1, "two", nil, true}}},
		})
		phases := []string{"PLANNING", "DEVELOPMENT", "REVIEW"}
		for _, p := range phases {
			admin.Must(t, moveMutation, map[string]any{"id": tk.ID, "to": p}, nil)
		}
		const events = 4
		selections := []struct{ sel, repeat string }{
			{`id taskId version position type data actorId correlationId causationId occurredAt __typename`, `version`},
			{`v: version t: type __typename d: data at: occurredAt`, `v: version`},
			{`version causationId`, `version`},
		}
		ws := b.dialWS(t, secret)
		read := func(id, sel string) []string {
			q := fmt.Sprintf(`subscription { s: taskEventsStream(taskId: %q, afterVersion: 0, batchSize: 3) { %s } }`, tk.ID, sel)
			require.NoError(t, ws.send(id, q, nil))
			var out []string
			for n := 0; n < events; {
				r := ws.next(id)
				require.Empty(t, r.Errors)
				var batch struct{ S []json.RawMessage }
				require.NoError(t, json.Unmarshal(r.Data, &batch))
				require.NotEmpty(t, batch.S)
				out = append(out, string(r.Data))
				n += len(batch.S)
			}
			return out
		}
		for i, s := range selections {
			before := b.App.Cohorts.Encoded()
			encoded := read(fmt.Sprintf("e%d", i), s.sel)
			require.Greater(t, b.App.Cohorts.Encoded(), before, "the encoder answered %q", s.sel)
			before = b.App.Cohorts.Encoded()
			executed := read(fmt.Sprintf("x%d", i), s.sel+` ... on Event { `+s.repeat+` }`)
			require.Equal(t, before, b.App.Cohorts.Encoded(), "gqlgen executed the fragment")
			require.Equal(t, executed, encoded, "selection %q", s.sel)
		}
	})
}
