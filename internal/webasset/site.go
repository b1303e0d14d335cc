package webasset

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
)

// Site is an embedded index page and the hashed assets it links to: what
// the IDE and the console each serve. The page is rendered once, when the
// Site is made.
type Site struct {
	page   *Asset
	csp    string
	prefix string            // the path the assets are served under
	assets map[string]*Asset // by path below prefix: "<hash>/<name>"
	isPage func(path string) bool
}

// SiteConfig describes a Site.
type SiteConfig struct {
	// Assets holds every file the page links to.
	Assets fs.FS
	// Page is the page's html/template source; {{asset "name"}} is the
	// href of the asset named name, HrefBase followed by its hashed path.
	Page string
	// Data is the page template's data.
	Data any
	// AssetPrefix is the path the assets are served under.
	AssetPrefix string
	// HrefBase starts every asset link on the page: AssetPrefix itself, or
	// a relative form of it for a page that may be mounted below a prefix.
	HrefBase string
	// CSP is the page's Content-Security-Policy.
	CSP string
	// IsPage reports whether a path outside AssetPrefix is answered with
	// the page; any other is 404.
	IsPage func(path string) bool
}

// NewSite loads the assets and renders the page. Returns an error when the
// embedded files are broken (two assets with one name, a template naming an
// asset that is not there), which only a bad build can cause.
func NewSite(c SiteConfig) (*Site, error) {
	assets, paths, err := Load(c.Assets)
	if err != nil {
		return nil, fmt.Errorf("reading embedded assets: %w", err)
	}
	tmpl, err := template.New("index").Funcs(template.FuncMap{
		"asset": func(name string) (string, error) {
			rel, ok := paths[name]
			if !ok {
				return "", fmt.Errorf("no embedded asset %q", name)
			}
			return c.HrefBase + rel, nil
		},
	}).Parse(c.Page)
	if err != nil {
		return nil, fmt.Errorf("parsing index page: %w", err)
	}
	var page bytes.Buffer
	if err := tmpl.Execute(&page, c.Data); err != nil {
		return nil, fmt.Errorf("rendering index page: %w", err)
	}
	return &Site{page: NewPage(page.Bytes()), csp: c.CSP, prefix: c.AssetPrefix, assets: assets, isPage: c.IsPage}, nil
}

// ServeHTTP answers an asset under the asset prefix (404 for an unknown
// one), the page where IsPage says so, and 404 anywhere else; every answer
// is marked nosniff and sends no referrer.
func (s *Site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")

	var a *Asset
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, s.prefix):
		if a = s.assets[strings.TrimPrefix(p, s.prefix)]; a == nil {
			http.NotFound(w, r)
			return
		}
	case s.isPage(p):
	default:
		http.NotFound(w, r)
		return
	}
	ServePageOrAsset(w, r, s.page, s.csp, a)
}

// ContentSecurityPolicy is the policy of a page that loads its scripts and
// styles only from itself and talks only to itself and the endpoint's
// origin (see ConnectSources): no eval, no workers, no plugins, no forms, no
// framing. styleSrc is the page's style-src; extra directives (a font-src)
// follow it.
func ContentSecurityPolicy(endpoint, styleSrc string, extra ...string) string {
	directives := []string{
		"default-src 'self'",
		"script-src 'self'",
		"style-src " + styleSrc,
	}
	directives = append(directives, extra...)
	directives = append(directives,
		"img-src 'self' data:",
		"connect-src "+ConnectSources(endpoint),
		"worker-src 'none'",
		"object-src 'none'",
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	)
	return strings.Join(directives, "; ")
}
