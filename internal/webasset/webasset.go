// Package webasset serves the browser bundles the binary embeds (the IDE and
// the console): assets under paths holding their content hash, cached for a
// year; an index page revalidated on every load; gzip when the client takes
// it and it helps; and the connect-src of a page that talks to a GraphQL
// endpoint.
package webasset

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
)

// Asset is one file served as it is.
type Asset struct {
	name        string
	contentType string
	body        []byte
	etag        string

	gzipOnce sync.Once
	gzipBody []byte // nil when compressing does not help
}

// New returns the asset name with body; its content type follows the name's
// extension.
func New(name string, body []byte) *Asset {
	sum := sha256.Sum256(body)
	return &Asset{name: name, contentType: contentType(name), body: body, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
}

// NewPage returns an HTML page.
func NewPage(body []byte) *Asset {
	a := New("index.html", body)
	a.contentType = "text/html; charset=utf-8"
	return a
}

// Load reads every file of fsys as an asset. It returns them by
// "<hash>/<name>" (the path below the asset prefix) and, by file name, the
// same path for the page to link to. Returns an error when two files share
// a name or one cannot be read.
func Load(fsys fs.FS) (byPath map[string]*Asset, hrefs map[string]string, err error) {
	byPath, hrefs = map[string]*Asset{}, map[string]string{}
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		name := path.Base(p)
		if _, dup := hrefs[name]; dup {
			return fmt.Errorf("two embedded assets named %s", name)
		}
		sum := sha256.Sum256(body)
		rel := hex.EncodeToString(sum[:6]) + "/" + name
		byPath[rel], hrefs[name] = New(name, body), rel
		return nil
	})
	return byPath, hrefs, err
}

// ServePageOrAsset answers GET and HEAD with asset a, or with the page (and
// its Content-Security-Policy) when a is nil; any other method is 405.
func ServePageOrAsset(w http.ResponseWriter, r *http.Request, page *Asset, csp string, a *Asset) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if a == nil {
		w.Header().Set("Content-Security-Policy", csp)
		Serve(w, r, page, false)
		return
	}
	Serve(w, r, a, true)
}

// Serve writes a, gzipped when the client accepts it and that is smaller,
// answering conditional requests by ETag. An immutable asset (one whose path
// holds its content hash) may be cached for a year; any other (a page that
// names the assets) must be revalidated on every load.
func Serve(w http.ResponseWriter, r *http.Request, a *Asset, immutable bool) {
	hdr := w.Header()
	if immutable {
		hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hdr.Set("Cache-Control", "no-cache")
	}
	hdr.Set("Content-Type", a.contentType)
	hdr.Add("Vary", "Accept-Encoding")
	body, etag := a.body, a.etag
	if AcceptsGzip(r) {
		if gz := a.gzipped(); gz != nil {
			body, etag = gz, strings.TrimSuffix(a.etag, `"`)+`-gz"`
			hdr.Set("Content-Encoding", "gzip")
		}
	}
	hdr.Set("ETag", etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(body))
}

func (a *Asset) gzipped() []byte {
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

// ConnectSources is the connect-src of a page that talks to endpoint (a
// path, or an absolute http(s) URL) over HTTP and WebSocket: itself, and
// the endpoint's origin in both schemes.
func ConnectSources(endpoint string) string {
	connect := []string{"'self'"}
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		switch u.Scheme {
		case "http":
			connect = append(connect, "http://"+u.Host, "ws://"+u.Host)
		case "https":
			connect = append(connect, "https://"+u.Host, "wss://"+u.Host)
		}
	}
	return strings.Join(connect, " ")
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".html":
		return "text/html; charset=utf-8"
	default:
		return "application/octet-stream"
	}
}

// AcceptsGzip reports whether the request's Accept-Encoding allows gzip with
// a non-zero quality.
func AcceptsGzip(r *http.Request) bool {
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
