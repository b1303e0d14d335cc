package ide

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// pageRefs matches the src and href attributes of the page's tags.
var pageRefs = regexp.MustCompile(`(?:src|href)="([^"]*)"`)

func setup(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewServer(Handler("/graphql"))
	t.Cleanup(srv.Close)
	res, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading /: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d, want 200", res.StatusCode)
	}
	return srv, string(body)
}

func TestHandler(t *testing.T) {
	t.Parallel()

	t.Run("Page", func(t *testing.T) {
		t.Parallel()
		srv, page := setup(t)
		res, err := http.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("Content-Type = %q", ct)
		}
		csp := res.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "script-src 'self'", "connect-src 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-eval") || strings.Contains(csp, "script-src 'self' 'unsafe-inline'") {
			t.Errorf("Content-Security-Policy %q allows inline or eval'd scripts", csp)
		}
		if !strings.Contains(page, `data-endpoint="/graphql"`) {
			t.Errorf("page is not wired to /graphql:\n%s", page)
		}
		if !strings.Contains(page, "viewer { id role }") {
			t.Errorf("page lacks the default query")
		}
		if regexp.MustCompile(`<script(?:\s[^>]*)?>[^<\s]`).MatchString(page) {
			t.Errorf("page has an inline script:\n%s", page)
		}
		if strings.Contains(page, "http://") || strings.Contains(page, "https://") || strings.Contains(page, `="//`) {
			t.Errorf("page names a remote URL:\n%s", page)
		}
	})

	t.Run("AssetsServed", func(t *testing.T) {
		t.Parallel()
		srv, page := setup(t)
		refs := pageRefs.FindAllStringSubmatch(page, -1)
		var scripts, styles int
		for _, m := range refs {
			ref := m[1]
			if strings.Contains(ref, ":") || strings.HasPrefix(ref, "//") {
				t.Errorf("asset %q is not a local path", ref)
				continue
			}
			if !strings.HasPrefix(ref, strings.TrimPrefix(AssetPrefix, "/")) {
				t.Errorf("asset %q is not under %s", ref, AssetPrefix)
			}
			want := ""
			switch {
			case strings.HasSuffix(ref, ".js"):
				want, scripts = "text/javascript; charset=utf-8", scripts+1
			case strings.HasSuffix(ref, ".css"):
				want, styles = "text/css; charset=utf-8", styles+1
			case strings.HasSuffix(ref, ".svg"):
				want = "image/svg+xml"
			default:
				t.Errorf("unexpected asset %q", ref)
				continue
			}
			res, err := http.Get(srv.URL + "/" + ref) // the client ungzips transparently
			if err != nil {
				t.Fatalf("GET %s: %v", ref, err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Errorf("GET %s = %d, want 200", ref, res.StatusCode)
			}
			if len(body) == 0 {
				t.Errorf("GET %s: empty body", ref)
			}
			if ct := res.Header.Get("Content-Type"); ct != want {
				t.Errorf("GET %s: Content-Type = %q, want %q", ref, ct, want)
			}
			if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=31536000") {
				t.Errorf("GET %s: Cache-Control = %q, want a long max-age", ref, cc)
			}
			if bytes.Contains(body, []byte("sourceMappingURL=")) {
				t.Errorf("GET %s: names a source map that is not served", ref)
			}
		}
		if scripts != 5 || styles != 2 {
			t.Errorf("page references %d scripts and %d styles, want 5 and 2", scripts, styles)
		}
	})

	t.Run("Gzip", func(t *testing.T) {
		t.Parallel()
		srv, page := setup(t)
		var js string
		for _, m := range pageRefs.FindAllStringSubmatch(page, -1) {
			if strings.HasSuffix(m[1], "/graphiql.min.js") {
				js = m[1]
			}
		}
		if js == "" {
			t.Fatal("page does not load graphiql.min.js")
		}
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/"+js, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("Content-Encoding = %q, want gzip", res.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(body, []byte("window.GraphiQL")) {
			t.Error("ungzipped graphiql.min.js does not define window.GraphiQL")
		}

		// A revalidation with the ETag is answered 304.
		req.Header.Set("If-None-Match", res.Header.Get("ETag"))
		res2, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res2.Body.Close()
		if res2.StatusCode != http.StatusNotModified {
			t.Errorf("revalidation = %d, want 304", res2.StatusCode)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		srv, _ := setup(t)
		for _, p := range []string{"/nope", AssetPrefix + "000000000000/graphiql.min.js", AssetPrefix, "/ide/"} {
			res, err := http.Get(srv.URL + p)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusNotFound {
				t.Errorf("GET %s = %d, want 404", p, res.StatusCode)
			}
		}
	})

	t.Run("MethodNotAllowed", func(t *testing.T) {
		t.Parallel()
		srv, _ := setup(t)
		res, err := http.Post(srv.URL+"/", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST / = %d, want 405", res.StatusCode)
		}
	})

	t.Run("AbsoluteEndpoint", func(t *testing.T) {
		t.Parallel()
		rec := httptest.NewRecorder()
		Handler("https://api.example.test/graphql").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		csp := rec.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "https://api.example.test") || !strings.Contains(csp, "wss://api.example.test") {
			t.Errorf("Content-Security-Policy %q does not allow the endpoint's origin", csp)
		}
	})
}
