package webasset

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

// A Site renders its page with links to the hashed assets, serves each
// asset under the prefix, the page where IsPage says, and 404 elsewhere.
func TestSite(t *testing.T) {
	files := fstest.MapFS{"dist/app.js": {Data: []byte("console.log(1)")}}
	site, err := NewSite(SiteConfig{
		Assets: files, Page: `<script src="{{asset "app.js"}}"></script>{{.}}`, Data: "hello",
		AssetPrefix: "/x/assets/", HrefBase: "/x/assets/", CSP: "default-src 'self'",
		IsPage: func(p string) bool { return strings.HasPrefix(p, "/x/") },
	})
	require.NoError(t, err)

	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		site.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w
	}
	page := get("/x/deep/link")
	require.Equal(t, http.StatusOK, page.Code)
	require.Equal(t, "default-src 'self'", page.Header().Get("Content-Security-Policy"))
	require.Equal(t, "nosniff", page.Header().Get("X-Content-Type-Options"))
	body := page.Body.String()
	require.Contains(t, body, "hello")
	href := body[strings.Index(body, `src="`)+5 : strings.Index(body, `"></script>`)]
	require.True(t, strings.HasPrefix(href, "/x/assets/") && strings.HasSuffix(href, "/app.js"), href)

	asset := get(href)
	require.Equal(t, http.StatusOK, asset.Code)
	require.Equal(t, "console.log(1)", asset.Body.String())
	require.Contains(t, asset.Header().Get("Cache-Control"), "immutable")
	require.Empty(t, asset.Header().Get("Content-Security-Policy"))

	require.Equal(t, http.StatusNotFound, get("/x/assets/000000000000/app.js").Code, "an unknown hash")
	require.Equal(t, http.StatusNotFound, get("/elsewhere").Code)

	_, err = NewSite(SiteConfig{Assets: files, Page: `{{asset "missing.js"}}`, IsPage: func(string) bool { return true }})
	require.ErrorContains(t, err, "missing.js", "a page naming an asset that is not embedded")
}
