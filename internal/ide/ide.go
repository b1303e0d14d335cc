// Package ide serves the interactive GraphQL IDE (GraphiQL) for the API.
//
// Every script and style the page uses is embedded in the binary, so the IDE
// works offline and behind firewalls: nothing is loaded from a CDN. The
// third-party builds under assets/dist are copied from npm by
// assets/update.sh (versions in assets/dist/VERSIONS); web/ holds the page
// and its small bootstrap script.
package ide

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
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

type handler struct {
	page   *webasset.Asset            // the rendered index page
	csp    string                     // Content-Security-Policy of the page
	assets map[string]*webasset.Asset // by path relative to AssetPrefix: "<hash>/<name>"
}

// Handler returns the IDE: the page at "/" and its assets under AssetPrefix,
// both wired to the GraphQL endpoint (a path such as "/graphql", or an
// absolute http(s) URL). Queries and mutations are sent to it over HTTP and
// subscriptions over a WebSocket whose URL the page derives from it and from
// window.location (ws:// or wss://). Any other path is answered 404.
//
// Handler panics if the embedded files are broken, which only a bad build can
// cause.
func Handler(endpoint string) http.Handler {
	assets, paths, err := webasset.Load(assetFS)
	if err != nil {
		panic(fmt.Sprintf("ide: reading embedded assets: %v", err))
	}
	h := &handler{assets: assets, csp: contentSecurityPolicy(endpoint)}
	hrefs := map[string]string{}
	for name, rel := range paths {
		// Relative, so the page also works when mounted below a prefix.
		hrefs[name] = strings.TrimPrefix(AssetPrefix, "/") + rel
	}

	tmpl := template.Must(template.New("index").Funcs(template.FuncMap{
		"asset": func(name string) (string, error) {
			href, ok := hrefs[name]
			if !ok {
				return "", fmt.Errorf("no embedded asset %q", name)
			}
			return href, nil
		},
	}).Parse(indexHTML))
	data := struct{ Endpoint, DefaultQuery string }{endpoint, DefaultQuery}
	var page bytes.Buffer
	if err := tmpl.Execute(&page, data); err != nil {
		panic(fmt.Sprintf("ide: rendering index page: %v", err))
	}
	h.page = webasset.NewPage(page.Bytes())
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")

	var a *webasset.Asset
	switch p := r.URL.Path; {
	case p == "/" || p == "" || p == "/index.html":
	case strings.HasPrefix(p, AssetPrefix):
		a = h.assets[strings.TrimPrefix(p, AssetPrefix)]
		if a == nil {
			http.NotFound(w, r)
			return
		}
	default:
		http.NotFound(w, r)
		return
	}
	webasset.ServePageOrAsset(w, r, h.page, h.csp, a)
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
	directives := []string{
		"default-src 'self'",
		"script-src 'self'",
		"style-src 'self' 'unsafe-inline'",
		"font-src 'self' data:",
		"img-src 'self' data:",
		"connect-src " + webasset.ConnectSources(endpoint),
		"worker-src 'none'",
		"object-src 'none'",
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}
	return strings.Join(directives, "; ")
}
