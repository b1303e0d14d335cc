package graph_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/ipa"
)

type apiToken struct {
	ID, ActorID, Role string
	RevokedAt         *string
}

// TestTokenManagement: admins mint, list and revoke tokens over the API; the
// secret is shown once; other roles are refused; a revoked token stops working.
func TestTokenManagement(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		b := setup(t, backend, apptest.WithAuthMode(auth.ModeRequired))
		_, adminSecret := b.Mint(t, "ada", ipa.RoleAdmin)
		_, opSecret := b.Mint(t, "oscar", ipa.RoleOperator)
		admin, operator := b.as(adminSecret), b.as(opSecret)

		const create = `mutation($a: String!, $r: Role!) { createToken(actorId: $a, role: $r) { secret token { id actorId role revokedAt } } }`
		var made struct {
			CreateToken struct {
				Secret string
				Token  apiToken
			}
		}
		admin.Must(t, create, map[string]any{"a": "vera", "r": "VIEWER"}, &made)
		require.Equal(t, "vera", made.CreateToken.Token.ActorID)
		require.Equal(t, "VIEWER", made.CreateToken.Token.Role)
		require.Nil(t, made.CreateToken.Token.RevokedAt)
		require.NotEmpty(t, made.CreateToken.Secret)

		viewer := b.as(made.CreateToken.Secret)
		require.Equal(t, "vera", viewer.Viewer(t).Viewer.ID, "the new secret authenticates")

		for _, c := range []*client{operator, viewer} {
			apptest.RequireError(t, c.Fail(t, create, map[string]any{"a": "mallory", "r": "ADMIN"}), ipa.EFORBIDDEN, "")
			apptest.RequireError(t, c.Fail(t, `{ apiTokens { id } }`, nil), ipa.EFORBIDDEN, "")
			apptest.RequireError(t, c.Fail(t, `mutation($id: ID!) { revokeToken(id: $id) { token { id } } }`,
				map[string]any{"id": made.CreateToken.Token.ID}), ipa.EFORBIDDEN, "")
		}
		apptest.RequireError(t, admin.Fail(t, create, map[string]any{"a": "  ", "r": "VIEWER"}), ipa.EINVALID, ipa.ReasonInvalidArgument)

		var list struct{ APITokens []apiToken }
		admin.Must(t, `{ apiTokens { id actorId role revokedAt } }`, nil, &list)
		require.Len(t, list.APITokens, 3)
		require.Equal(t, made.CreateToken.Token.ID, list.APITokens[0].ID, "newest first")
		require.NotContains(t, string(admin.GQL(t, `{ apiTokens { id } }`, nil).Raw), made.CreateToken.Secret)

		var revoked struct{ RevokeToken struct{ Token apiToken } }
		admin.Must(t, `mutation($id: ID!) { revokeToken(id: $id) { token { id revokedAt } } }`,
			map[string]any{"id": made.CreateToken.Token.ID}, &revoked)
		require.NotNil(t, revoked.RevokeToken.Token.RevokedAt)
		apptest.RequireUnauthenticated(t, viewer.GQL(t, `{ viewer { id } }`, nil))
		apptest.RequireError(t, admin.Fail(t, `mutation { revokeToken(id: "nope") { token { id } } }`, nil), ipa.ENOTFOUND, "")
		b.CheckNoLeaks(t)
	})
}
