package ui

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

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return res, body
}

func setup(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(Handler("/graphql"))
	t.Cleanup(srv.Close)
	return srv
}

func TestHandler(t *testing.T) {
	t.Parallel()

	t.Run("PageAndDeepLinks", func(t *testing.T) {
		t.Parallel()
		srv := setup(t)
		_, first := get(t, srv.URL+Base)
		for _, p := range []string{Base, Base + "task/0b0c4a4e-6b1b-4a47-9d1e-3c1d2f1e8a90", Base + "tasks?status=ACTIVE"} {
			res, body := get(t, srv.URL+p)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d, want 200", p, res.StatusCode)
			}
			if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("GET %s: Content-Type = %q", p, ct)
			}
			if cc := res.Header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("GET %s: Cache-Control = %q, want no-cache", p, cc)
			}
			if !bytes.Equal(body, first) {
				t.Errorf("GET %s is not the console's page", p)
			}
			csp := res.Header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe-") {
				t.Errorf("Content-Security-Policy %q allows unsafe sources", csp)
			}
		}
		page := string(first)
		if !strings.Contains(page, `data-endpoint="/graphql"`) || !strings.Contains(page, `data-base="/ui/"`) {
			t.Errorf("page is not wired to /graphql under /ui/:\n%s", page)
		}
		if regexp.MustCompile(`<script(?:\s[^>]*)?>[^<\s]`).MatchString(page) || strings.Contains(page, "style=") {
			t.Errorf("page has an inline script or style:\n%s", page)
		}
		if strings.Contains(page, "http://") || strings.Contains(page, "https://") || strings.Contains(page, `="//`) {
			t.Errorf("page names a remote URL:\n%s", page)
		}
	})

	t.Run("AssetsServed", func(t *testing.T) {
		t.Parallel()
		srv := setup(t)
		_, page := get(t, srv.URL+Base)
		var scripts, styles int
		for _, m := range pageRefs.FindAllStringSubmatch(string(page), -1) {
			ref := m[1]
			if !strings.HasPrefix(ref, AssetPrefix) {
				t.Errorf("asset %q is not under %s", ref, AssetPrefix)
				continue
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
			res, body := get(t, srv.URL+ref) // the client ungzips transparently
			if res.StatusCode != http.StatusOK || len(body) == 0 {
				t.Errorf("GET %s = %d with %d bytes", ref, res.StatusCode, len(body))
			}
			if ct := res.Header.Get("Content-Type"); ct != want {
				t.Errorf("GET %s: Content-Type = %q, want %q", ref, ct, want)
			}
			if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
				t.Errorf("GET %s: Cache-Control = %q, want immutable for a year", ref, cc)
			}
			if res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s: no nosniff", ref)
			}
			if bytes.Contains(body, []byte("sourceMappingURL=")) || bytes.Contains(body, []byte("https://cdn")) {
				t.Errorf("GET %s names a source map or a CDN", ref)
			}
		}
		if scripts != 1 || styles != 1 {
			t.Errorf("page references %d scripts and %d styles, want 1 and 1", scripts, styles)
		}
	})

	t.Run("Gzip", func(t *testing.T) {
		t.Parallel()
		srv := setup(t)
		_, page := get(t, srv.URL+Base)
		js := regexp.MustCompile(`src="([^"]*/app\.js)"`).FindStringSubmatch(string(page))
		if js == nil {
			t.Fatal("page does not load app.js")
		}
		req, _ := http.NewRequest(http.MethodGet, srv.URL+js[1], nil)
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
		if !bytes.Contains(body, []byte("taskChanged")) {
			t.Error("ungzipped app.js is not the console's bundle")
		}
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
		srv := setup(t)
		for _, p := range []string{"/", "/nope", AssetPrefix + "000000000000/app.js", AssetPrefix, AssetPrefix + "app.js"} {
			res, _ := get(t, srv.URL+p)
			if res.StatusCode != http.StatusNotFound {
				t.Errorf("GET %s = %d, want 404", p, res.StatusCode)
			}
		}
	})

	t.Run("MethodNotAllowed", func(t *testing.T) {
		t.Parallel()
		srv := setup(t)
		res, err := http.Post(srv.URL+Base+"task/x", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("POST = %d (Allow %q), want 405 with GET, HEAD", res.StatusCode, res.Header.Get("Allow"))
		}
	})

	t.Run("AbsoluteEndpoint", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(Handler("https://api.example.test/graphql"))
		t.Cleanup(srv.Close)
		res, _ := get(t, srv.URL+Base)
		csp := res.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "connect-src 'self' https://api.example.test wss://api.example.test") {
			t.Errorf("Content-Security-Policy %q does not allow the endpoint's origin", csp)
		}
	})
}
