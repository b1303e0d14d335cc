// Package ui serves the operations console at /ui/: a task list and task
// pages that follow changes live, with the actions the viewer's role allows.
// It uses only the public GraphQL API.
//
// The console is a small TypeScript + Preact application under src/; its
// built bundle in dist/ is committed and embedded, so the binary (and `go
// run`) serves it with no Node.js and no network: nothing comes from a CDN.
// `npm run build` in src/ rebuilds dist/ reproducibly and `npm run check`
// proves the committed bundle is what the sources produce.
package ui

import (
	"embed"
	"fmt"
	"net/http"
	"strings"

	"github.com/ipa-dev/ipa/internal/webasset"
)

//go:embed dist/app.js dist/app.css dist/favicon.svg
var assetFS embed.FS

//go:embed dist/index.html
var indexHTML string

// Base is the path the console is served under; a mux routes Base (and
// everything below it) to Handler.
const Base = "/ui/"

// AssetPrefix is where the console's scripts and styles are served, each at
// a path holding its content hash.
const AssetPrefix = Base + "assets/"

// IDEPath is where the GraphQL IDE lives; the console links to it.
const IDEPath = "/"

// Handler returns the console: its page at Base and at every path below it
// that is not an asset (so deep links such as /ui/task/ID load the page,
// which routes by the path), and its assets under AssetPrefix. The page talks
// to the GraphQL endpoint (a path such as "/graphql", or an absolute http(s)
// URL) over HTTP and, for live updates, over a WebSocket derived from it.
// Paths outside Base and unknown assets are answered 404.
//
// Handler panics if the embedded files are broken, which only a bad build can
// cause.
func Handler(endpoint string) http.Handler {
	site, err := webasset.NewSite(webasset.SiteConfig{
		Assets:      assetFS,
		Page:        indexHTML,
		Data:        struct{ Endpoint, Base, IDE string }{endpoint, Base, IDEPath},
		AssetPrefix: AssetPrefix,
		// Absolute: deep links put the page at any depth below Base.
		HrefBase: AssetPrefix,
		CSP:      contentSecurityPolicy(endpoint),
		IsPage:   func(p string) bool { return strings.HasPrefix(p, Base) },
	})
	if err != nil {
		panic(fmt.Sprintf("ui: %v", err))
	}
	return site
}

// contentSecurityPolicy allows the page to load scripts and styles only from
// itself and to talk only to itself and the endpoint's origin. Unlike the
// IDE, the console needs no inline styles: Preact sets styles through the
// CSSOM, which style-src does not govern.
func contentSecurityPolicy(endpoint string) string {
	return webasset.ContentSecurityPolicy(endpoint, "'self'")
}
