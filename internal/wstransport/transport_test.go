package wstransport_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/graph/generated"
	"github.com/ipa-dev/ipa/internal/wstransport"
)

// A connection that sends no connection_init in time is closed: 4408 on
// graphql-transport-ws, 1002 on graphql-ws.
func TestInitTimeout(t *testing.T) {
	gql := handler.New(generated.NewExecutableSchema(generated.Config{}))
	gql.AddTransport(wstransport.New(wstransport.Config{InitTimeout: 100 * time.Millisecond}))
	srv := httptest.NewServer(gql)
	defer srv.Close()
	for proto, want := range map[string]websocket.StatusCode{
		wstransport.SubprotocolTransportWS: wstransport.CloseInitTimeout,
		wstransport.SubprotocolGraphQLWS:   websocket.StatusProtocolError,
	} {
		t.Run(proto, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"),
				&websocket.DialOptions{Subprotocols: []string{proto}})
			require.NoError(t, err)
			defer c.CloseNow()
			_, _, err = c.Read(ctx)
			require.Error(t, err)
			require.NoError(t, ctx.Err(), "not closed")
			require.Equal(t, want, websocket.CloseStatus(err))
		})
	}
}
