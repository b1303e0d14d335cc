package httpserver_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/ipa"
)

type viewerResult struct {
	Viewer struct{ ID, Role string }
}

func (c *client) viewer(t *testing.T) viewerResult {
	t.Helper()
	var v viewerResult
	c.must(t, `{ viewer { id role } }`, nil, &v)
	return v
}

// requireUnauthenticated asserts the request was refused with 401 and
// UNAUTHENTICATED before anything ran.
func requireUnauthenticated(t *testing.T, r *gqlResponse) {
	t.Helper()
	require.Equalf(t, http.StatusUnauthorized, r.Status, "%s", r.Raw)
	require.Len(t, r.Errors, 1)
	requireError(t, r.Errors[0], ipa.EUNAUTHENTICATED, "")
	require.Contains(t, r.Header.Get("WWW-Authenticate"), "Bearer")
	require.Empty(t, r.Data)
}

func TestAuth(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		t.Run("AutoMode", func(t *testing.T) {
			t.Parallel()
			b := setup(t, backend)
			anon := b.anon()

			// No token exists: requests act as the local admin.
			v := anon.viewer(t)
			require.Equal(t, "local", v.Viewer.ID)
			require.Equal(t, "ADMIN", v.Viewer.Role)
			local := anon.createTitled(t, "made locally")
			require.Equal(t, "local", local.CreatedBy)

			_, viewerSecret := b.mint(t, "vera", ipa.RoleViewer)
			opTok, opSecret := b.mint(t, "oscar", ipa.RoleOperator)
			_, adminSecret := b.mint(t, "ada", ipa.RoleAdmin)

			// Once a token exists the open door shuts, within the 1 s cache.
			time.Sleep(1100 * time.Millisecond)
			n := b.as(adminSecret).count(t, nil)
			for _, q := range []string{`{ viewer { id } }`, `{ taskCount }`} {
				requireUnauthenticated(t, anon.gql(t, q, nil))
			}
			requireUnauthenticated(t, anon.gql(t, createTaskMutation, map[string]any{"input": map[string]any{"title": "sneaky"}}))
			require.Equal(t, n, b.as(adminSecret).count(t, nil), "a refused request created a task")

			// Viewer: queries yes, mutations no.
			viewer := b.as(viewerSecret)
			v = viewer.viewer(t)
			require.Equal(t, "vera", v.Viewer.ID)
			require.Equal(t, "VIEWER", v.Viewer.Role)
			require.Equal(t, local, viewer.get(t, local.ID))
			require.Equal(t, n, viewer.count(t, nil))
			var rts struct{ Runtimes []struct{ Name string } }
			viewer.must(t, `{ runtimes { name } }`, nil, &rts)
			require.Len(t, rts.Runtimes, 2)
			require.Equal(t, "demo", rts.Runtimes[0].Name)
			require.Equal(t, "exec", rts.Runtimes[1].Name)
			head := b.headPosition(t)
			e := viewer.fail(t, createTaskMutation, map[string]any{"input": map[string]any{"title": "viewer's"}})
			requireError(t, e, ipa.EFORBIDDEN, "")
			for _, m := range taskMutations {
				e := viewer.fail(t, m.query, map[string]any{"id": local.ID})
				requireError(t, e, ipa.EFORBIDDEN, "")
			}
			require.Equal(t, head, b.headPosition(t))
			require.Equal(t, n, viewer.count(t, nil))

			// Operator: may mutate; every event carries its actor id, whatever
			// the client claims.
			op := b.as(opSecret)
			v = op.viewer(t)
			require.Equal(t, "oscar", v.Viewer.ID)
			require.Equal(t, "OPERATOR", v.Viewer.Role)
			r := op.do(t, request{
				query:   createTaskMutation,
				vars:    map[string]any{"input": map[string]any{"title": "operator's", "metadata": map[string]any{"actorId": "mallory"}}},
				headers: map[string]string{"X-Actor-Id": "mallory", "X-User": "mallory"},
			})
			require.Empty(t, r.Errors)
			created := op.get(t, op.createTitled(t, "second").ID)
			require.Equal(t, "oscar", created.CreatedBy)
			op.transition(t, created.ID, "PLANNING")
			op.cancel(t, created.ID, "by oscar")
			for _, ev := range op.events(t, created.ID) {
				require.NotNil(t, ev.ActorID)
				require.Equal(t, "oscar", *ev.ActorID)
			}
			var res struct {
				Tasks struct{ Edges []struct{ Node task } }
			}
			op.must(t, `{ tasks(filter: {createdBy: "oscar"}) { edges { node { `+taskFields+` } } } }`, nil, &res)
			require.Len(t, res.Tasks.Edges, 2)
			require.Equal(t, 0, op.count(t, map[string]any{"createdBy": "mallory"}))

			// Admin: may mutate too.
			admin := b.as(adminSecret)
			require.Equal(t, "ADMIN", admin.viewer(t).Viewer.Role)
			done := admin.complete(t, local.ID)
			require.Equal(t, "COMPLETED", done.Status)
			evs := admin.events(t, local.ID)
			require.Equal(t, "local", *evs[0].ActorID)
			require.Equal(t, "ada", *evs[len(evs)-1].ActorID)

			// Bad tokens.
			for _, h := range []string{"Bearer nope", "Bearer ipa_" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "Basic " + opSecret, "Bearer", opSecret, "Bearer  "} {
				r := anon.do(t, request{query: `{ viewer { id } }`, headers: map[string]string{"Authorization": h}})
				requireUnauthenticated(t, r)
			}

			// A revoked token stops working at once.
			require.NoError(t, b.store.RevokeToken(context.Background(), opTok.ID))
			requireUnauthenticated(t, op.gql(t, `{ viewer { id } }`, nil))
			requireUnauthenticated(t, op.gql(t, createTaskMutation, map[string]any{"input": map[string]any{"title": "after revoke"}}))
			require.Equal(t, "vera", viewer.viewer(t).Viewer.ID, "other tokens still work")
		})

		t.Run("RequiredMode", func(t *testing.T) {
			t.Parallel()
			b := setup(t, backend, withAuthMode(auth.ModeRequired))
			// Even with no token in existence, a token is required.
			requireUnauthenticated(t, b.anon().gql(t, `{ viewer { id } }`, nil))
			requireUnauthenticated(t, b.anon().gql(t, createTaskMutation, map[string]any{"input": map[string]any{"title": "x"}}))
			_, secret := b.mint(t, "ops-bot", ipa.RoleOperator)
			c := b.as(secret)
			require.Equal(t, "ops-bot", c.viewer(t).Viewer.ID)
			tk := c.createTitled(t, "bot task")
			require.Equal(t, "ops-bot", tk.CreatedBy)
			require.Equal(t, "ops-bot", *c.events(t, tk.ID)[0].ActorID)
			requireUnauthenticated(t, b.anon().gql(t, `{ taskCount }`, nil))
			requireUnauthenticated(t, b.as("ipa_wrong").gql(t, `{ taskCount }`, nil))
		})
	})
}
