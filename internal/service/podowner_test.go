package service

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// PodOwner answers from the lease lookup the service was built with, and
// only to a VIEWER or more.
func TestPodOwner(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.owners["held"] = "instance-b"

	owner, err := f.podS.PodOwner(as(ipa.RoleViewer), "held")
	require.NoError(t, err)
	require.Equal(t, "instance-b", owner)

	owner, err = f.podS.PodOwner(as(ipa.RoleViewer), "no-lease")
	require.NoError(t, err)
	require.Empty(t, owner)

	_, err = f.podS.PodOwner(context.Background(), "held")
	requireCode(t, err, ipa.EUNAUTHENTICATED, "")
}
