package pgtest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestStart(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"First", "Second"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			url := pgtest.Start(t)
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, url)
			require.NoError(t, err)
			defer conn.Close(ctx)
			_, err = conn.Exec(ctx, "CREATE TABLE x (id int)") // each database is fresh
			require.NoError(t, err)
			var fsync string
			require.NoError(t, conn.QueryRow(ctx, "SHOW fsync").Scan(&fsync))
			require.Equal(t, "on", fsync)
		})
	}
}
