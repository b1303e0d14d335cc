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
	page   *asset            // the rendered index page
	csp    string            // Content-Security-Policy of the page
	assets map[string]*asset // by path relative to AssetPrefix: "<hash>/<name>"
}

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
		sum := sha256.Sum256(body)
		hash := hex.EncodeToString(sum[:6])
		h.assets[hash+"/"+name] = &asset{
			name:        name,
			contentType: contentType(name),
			body:        body,
			etag:        `"` + hex.EncodeToString(sum[:16]) + `"`,
		}
		// Absolute: deep links put the page at any depth below Base.
		hrefs[name] = AssetPrefix + hash + "/" + name
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("ui: reading embedded assets: %v", err))
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
	data := struct{ Endpoint, Base, IDE string }{endpoint, Base, IDEPath}
	var page bytes.Buffer
	if err := tmpl.Execute(&page, data); err != nil {
		panic(fmt.Sprintf("ui: rendering index page: %v", err))
	}
	sum := sha256.Sum256(page.Bytes())
	h.page = &asset{
		name:        "index.html",
		contentType: "text/html; charset=utf-8",
		body:        page.Bytes(),
		etag:        `"` + hex.EncodeToString(sum[:16]) + `"`,
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")

	p := r.URL.Path
	var a *asset
	switch {
	case strings.HasPrefix(p, AssetPrefix):
		a = h.assets[strings.TrimPrefix(p, AssetPrefix)]
		if a == nil {
			http.NotFound(w, r)
			return
		}
	case strings.HasPrefix(p, Base):
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
		a = h.page
		hdr.Set("Content-Security-Policy", h.csp)
		// The page names the assets by hash, so it must be revalidated to
		// pick up a new build.
		hdr.Set("Cache-Control", "no-cache")
	} else {
		hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	hdr.Set("Content-Type", a.contentType)
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
// itself and to talk only to itself and the endpoint's origin. Unlike the
// IDE, the console needs no inline styles: Preact sets styles through the
// CSSOM, which style-src does not govern.
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
		"style-src 'self'",
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
