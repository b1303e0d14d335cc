package graph_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/ipa"
)

func TestAuth(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		t.Run("AutoMode", func(t *testing.T) {
			t.Parallel()
			b := setup(t, backend)
			anon := b.anon()

			// No token exists: requests act as the local admin.
			v := anon.Viewer(t)
			require.Equal(t, "local", v.Viewer.ID)
			require.Equal(t, "ADMIN", v.Viewer.Role)
			local := anon.CreateTitled(t, "made locally")
			require.Equal(t, "local", local.CreatedBy)

			_, viewerSecret := b.Mint(t, "vera", ipa.RoleViewer)
			opTok, opSecret := b.Mint(t, "oscar", ipa.RoleOperator)
			_, adminSecret := b.Mint(t, "ada", ipa.RoleAdmin)

			// Once a token exists the open door shuts, within the 1 s cache.
			time.Sleep(1100 * time.Millisecond)
			n := b.as(adminSecret).Count(t, nil)
			for _, q := range []string{`{ viewer { id } }`, `{ taskCount }`} {
				apptest.RequireUnauthenticated(t, anon.GQL(t, q, nil))
			}
			apptest.RequireUnauthenticated(t, anon.GQL(t, apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "sneaky"}}))
			require.Equal(t, n, b.as(adminSecret).Count(t, nil), "a refused request created a task")

			// Viewer: queries yes, mutations no.
			viewer := b.as(viewerSecret)
			v = viewer.Viewer(t)
			require.Equal(t, "vera", v.Viewer.ID)
			require.Equal(t, "VIEWER", v.Viewer.Role)
			require.Equal(t, local, viewer.Get(t, local.ID))
			require.Equal(t, n, viewer.Count(t, nil))
			var rts struct{ Runtimes []struct{ Name string } }
			viewer.Must(t, `{ runtimes { name } }`, nil, &rts)
			require.Len(t, rts.Runtimes, 2)
			require.Equal(t, "demo", rts.Runtimes[0].Name)
			require.Equal(t, "exec", rts.Runtimes[1].Name)
			head := b.HeadPosition(t)
			e := viewer.Fail(t, apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "viewer's"}})
			apptest.RequireError(t, e, ipa.EFORBIDDEN, "")
			for _, m := range taskMutations {
				e := viewer.Fail(t, m.query, map[string]any{"id": local.ID})
				apptest.RequireError(t, e, ipa.EFORBIDDEN, "")
			}
			require.Equal(t, head, b.HeadPosition(t))
			require.Equal(t, n, viewer.Count(t, nil))

			// Operator: may mutate; every event carries its actor id, whatever
			// the client claims.
			op := b.as(opSecret)
			v = op.Viewer(t)
			require.Equal(t, "oscar", v.Viewer.ID)
			require.Equal(t, "OPERATOR", v.Viewer.Role)
			r := op.Do(t, request{
				Query:   apptest.CreateTaskMutation,
				Vars:    map[string]any{"input": map[string]any{"title": "operator's", "metadata": map[string]any{"actorId": "mallory"}}},
				Headers: map[string]string{"X-Actor-Id": "mallory", "X-User": "mallory"},
			})
			require.Empty(t, r.Errors)
			created := op.Get(t, op.CreateTitled(t, "second").ID)
			require.Equal(t, "oscar", created.CreatedBy)
			op.transition(t, created.ID, "PLANNING")
			op.cancel(t, created.ID, "by oscar")
			for _, ev := range op.Events(t, created.ID) {
				require.NotNil(t, ev.ActorID)
				require.Equal(t, "oscar", *ev.ActorID)
			}
			var res struct {
				Tasks struct{ Edges []struct{ Node task } }
			}
			op.Must(t, `{ tasks(filter: {createdBy: "oscar"}) { edges { node { `+apptest.TaskFields+` } } } }`, nil, &res)
			require.Len(t, res.Tasks.Edges, 2)
			require.Equal(t, 0, op.Count(t, map[string]any{"createdBy": "mallory"}))

			// Admin: may mutate too.
			admin := b.as(adminSecret)
			require.Equal(t, "ADMIN", admin.Viewer(t).Viewer.Role)
			done := admin.complete(t, local.ID)
			require.Equal(t, "COMPLETED", done.Status)
			evs := admin.Events(t, local.ID)
			require.Equal(t, "local", *evs[0].ActorID)
			require.Equal(t, "ada", *evs[len(evs)-1].ActorID)

			// Bad tokens.
			for _, h := range []string{"Bearer nope", "Bearer ipa_" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "Basic " + opSecret, "Bearer", opSecret, "Bearer  "} {
				r := anon.Do(t, request{Query: `{ viewer { id } }`, Headers: map[string]string{"Authorization": h}})
				apptest.RequireUnauthenticated(t, r)
			}

			// A revoked token stops working at once.
			require.NoError(t, b.Store.RevokeToken(context.Background(), opTok.ID))
			apptest.RequireUnauthenticated(t, op.GQL(t, `{ viewer { id } }`, nil))
			apptest.RequireUnauthenticated(t, op.GQL(t, apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "after revoke"}}))
			require.Equal(t, "vera", viewer.Viewer(t).Viewer.ID, "other tokens still work")
		})

		t.Run("RequiredMode", func(t *testing.T) {
			t.Parallel()
			b := setup(t, backend, apptest.WithAuthMode(auth.ModeRequired))
			// Even with no token in existence, a token is required.
			apptest.RequireUnauthenticated(t, b.anon().GQL(t, `{ viewer { id } }`, nil))
			apptest.RequireUnauthenticated(t, b.anon().GQL(t, apptest.CreateTaskMutation, map[string]any{"input": map[string]any{"title": "x"}}))
			_, secret := b.Mint(t, "ops-bot", ipa.RoleOperator)
			c := b.as(secret)
			require.Equal(t, "ops-bot", c.Viewer(t).Viewer.ID)
			tk := c.CreateTitled(t, "bot task")
			require.Equal(t, "ops-bot", tk.CreatedBy)
			require.Equal(t, "ops-bot", *c.Events(t, tk.ID)[0].ActorID)
			apptest.RequireUnauthenticated(t, b.anon().GQL(t, `{ taskCount }`, nil))
			apptest.RequireUnauthenticated(t, b.as("ipa_wrong").GQL(t, `{ taskCount }`, nil))
		})
	})
}
