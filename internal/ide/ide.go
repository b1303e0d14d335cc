// Package ide serves the interactive GraphQL IDE (GraphiQL) for the API.
//
// Every script and style the page uses is embedded in the binary, so the IDE
// works offline and behind firewalls: nothing is loaded from a CDN. The
// third-party builds under assets/dist are copied from npm by
// assets/update.sh (versions in assets/dist/VERSIONS); web/ holds the page
// and its small bootstrap script.
package ide

import (
	"embed"
	"fmt"
	"net/http"
	"strings"

	"github.com/ipa-dev/ipa/internal/webasset"
)

//go:embed assets/dist/*.js assets/dist/*.css web/ide.js web/ide.css web/favicon.svg
var assetFS embed.FS

//go:embed web/index.html
var indexHTML string

// AssetPrefix is the path under which the page's scripts and styles are
// served. A mux that does not route every path to Handler must route both "/"
// and this prefix to it.
const AssetPrefix = "/ide/assets/"

// DefaultQuery is the query the editor opens with on a first visit.
const DefaultQuery = `# Welcome to ipa's GraphQL IDE.
#
# Run with the ▶ button or Ctrl-Enter; Ctrl-Space completes
# fields; the Docs panel (book icon) lists every type.
#
# When a token is needed, set it in the Headers tab below:
#   {"Authorization": "Bearer <token>"}
# It goes with queries and mutations, and in connection_init
# of the WebSocket that subscriptions use. Try one:
#   subscription { events { position type taskId } }

{
  viewer { id role }
  runtimes { name description }
  tasks(first: 5) {
    totalCount
    edges { node { id title status phase pod { state } } }
  }
}
`

// Handler returns the IDE: the page at "/" and its assets under AssetPrefix,
// both wired to the GraphQL endpoint (a path such as "/graphql", or an
// absolute http(s) URL). Queries and mutations are sent to it over HTTP and
// subscriptions over a WebSocket whose URL the page derives from it and from
// window.location (ws:// or wss://). Any other path is answered 404.
//
// Handler panics if the embedded files are broken, which only a bad build can
// cause.
func Handler(endpoint string) http.Handler {
	site, err := webasset.NewSite(webasset.SiteConfig{
		Assets:      assetFS,
		Page:        indexHTML,
		Data:        struct{ Endpoint, DefaultQuery string }{endpoint, DefaultQuery},
		AssetPrefix: AssetPrefix,
		// Relative, so the page also works when mounted below a prefix.
		HrefBase: strings.TrimPrefix(AssetPrefix, "/"),
		CSP:      contentSecurityPolicy(endpoint),
		IsPage:   func(p string) bool { return p == "/" || p == "" || p == "/index.html" },
	})
	if err != nil {
		panic(fmt.Sprintf("ide: %v", err))
	}
	return site
}

// contentSecurityPolicy allows the page to load scripts and styles only from
// itself and to talk only to itself and the endpoint's origin.
//
// GraphiQL genuinely needs two relaxations: its fonts are data: URIs inside
// graphiql.min.css, and its dialogs (Radix, through react-remove-scroll)
// insert <style> elements while open, and rendered markdown may carry style
// attributes, so style-src allows 'unsafe-inline'. Scripts stay 'self' only:
// the bootstrap is a file, and nothing needs eval.
func contentSecurityPolicy(endpoint string) string {
	return webasset.ContentSecurityPolicy(endpoint, "'self' 'unsafe-inline'", "font-src 'self' data:")
}
