package store

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/dbtest"
)

// Two servers with one instance id on one PostgreSQL database: the second
// is refused while the first holds the id, and admitted once it let go.
func TestHoldInstanceID(t *testing.T) {
	url := dbtest.URL(t, "postgres")
	a, b := mustOpen(t, url), mustOpen(t, url)
	ctx := context.Background()

	release, err := a.HoldInstanceID(ctx, "host:/srv/ipa")
	require.NoError(t, err)
	_, err = b.HoldInstanceID(ctx, "host:/srv/ipa")
	require.True(t, errors.Is(err, ErrInstanceInUse), "second holder: %v", err)
	other, err := b.HoldInstanceID(ctx, "host:/srv/other")
	require.NoError(t, err, "another id is free")
	other()

	release()
	again, err := b.HoldInstanceID(ctx, "host:/srv/ipa")
	require.NoError(t, err, "the id is free once its holder let go")
	again()
}
