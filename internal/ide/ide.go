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
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
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

// asset is one embedded file, served at a path that contains its content
// hash so browsers may cache it for a year.
type asset struct {
	name        string
	contentType string
	body        []byte
	etag        string

	gzipOnce sync.Once
	gzipBody []byte // nil when compressing does not help
}

func (a *asset) gzipped() []byte {
	a.gzipOnce.Do(func() {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if _, err := zw.Write(a.body); err != nil {
			return
		}
		if err := zw.Close(); err != nil {
			return
		}
		if buf.Len() < len(a.body) {
			a.gzipBody = buf.Bytes()
		}
	})
	return a.gzipBody
}

type handler struct {
	page   []byte            // the rendered index page
	etag   string            // of page
	csp    string            // Content-Security-Policy of the page
	assets map[string]*asset // by path relative to AssetPrefix: "<hash>/<name>"
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
	h := &handler{assets: map[string]*asset{}, csp: contentSecurityPolicy(endpoint)}
	hrefs := map[string]string{}
	err := fs.WalkDir(assetFS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := assetFS.ReadFile(p)
		if err != nil {
			return err
		}
		name := path.Base(p)
		if _, dup := hrefs[name]; dup {
			return fmt.Errorf("ide: two embedded assets named %s", name)
		}
		sum := sha256.Sum256(body)
		hash := hex.EncodeToString(sum[:6])
		h.assets[hash+"/"+name] = &asset{
			name:        name,
			contentType: contentType(name),
			body:        body,
			etag:        `"` + hex.EncodeToString(sum[:16]) + `"`,
		}
		// Relative, so the page also works when mounted below a prefix.
		hrefs[name] = strings.TrimPrefix(AssetPrefix, "/") + hash + "/" + name
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("ide: reading embedded assets: %v", err))
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
	h.page = page.Bytes()
	sum := sha256.Sum256(h.page)
	h.etag = `"` + hex.EncodeToString(sum[:16]) + `"`
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")

	var a *asset
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
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}

	if a == nil {
		hdr.Set("Content-Type", "text/html; charset=utf-8")
		hdr.Set("Content-Security-Policy", h.csp)
		// The page names the assets by hash, so it must be revalidated to
		// pick up a new build.
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("ETag", h.etag)
		http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(h.page))
		return
	}

	hdr.Set("Content-Type", a.contentType)
	hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
	hdr.Add("Vary", "Accept-Encoding")
	body, etag := a.body, a.etag
	if acceptsGzip(r) {
		if gz := a.gzipped(); gz != nil {
			body, etag = gz, strings.TrimSuffix(a.etag, `"`)+`-gz"`
			hdr.Set("Content-Encoding", "gzip")
		}
	}
	hdr.Set("ETag", etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(body))
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
	connect := []string{"'self'"}
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		switch u.Scheme {
		case "http":
			connect = append(connect, "http://"+u.Host, "ws://"+u.Host)
		case "https":
			connect = append(connect, "https://"+u.Host, "wss://"+u.Host)
		}
	}
	directives := []string{
		"default-src 'self'",
		"script-src 'self'",
		"style-src 'self' 'unsafe-inline'",
		"font-src 'self' data:",
		"img-src 'self' data:",
		"connect-src " + strings.Join(connect, " "),
		"worker-src 'none'",
		"object-src 'none'",
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}
	return strings.Join(directives, "; ")
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	default:
		return "application/octet-stream"
	}
}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip with
// a non-zero quality.
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}
