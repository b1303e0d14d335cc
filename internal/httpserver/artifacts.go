package httpserver

import (
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/ipa-dev/ipa/graph"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// ArtifactsPath is where artifacts are downloaded: ArtifactsPath{taskId}/{name}.
const ArtifactsPath = "/artifacts/"

// artifactsHandler serves GET and HEAD /artifacts/{taskId}/{name} behind
// withAuth (the credentials and roles of /graphql; VIEWER and above).
// http.ServeContent answers ranges, If-None-Match against the ETag (the
// artifact's SHA-256) and If-Modified-Since. The file is always an
// attachment, never rendered in the server's origin: nosniff and a
// sandboxing Content-Security-Policy keep a saved HTML page from running
// as the console.
func artifactsHandler(res *graph.Resolver) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, r, http.StatusMethodNotAllowed, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Artifacts are read with GET or HEAD."))
			return
		}
		// The raw path, so an encoded '/' ("..%2F") is not split off.
		rest := strings.TrimPrefix(r.URL.EscapedPath(), ArtifactsPath)
		escTask, escName, ok := strings.Cut(rest, "/")
		taskID, err1 := url.PathUnescape(escTask)
		name, err2 := url.PathUnescape(escName)
		if !ok || err1 != nil || err2 != nil || taskID == "" || name == "" || strings.ContainsAny(taskID, "/\\") {
			writeError(w, r, http.StatusBadRequest, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "Artifacts are at %s{taskId}/{name}.", ArtifactsPath))
			return
		}
		if res == nil || res.ArtifactService == nil {
			writeError(w, r, http.StatusNotFound, ipa.Errorf(ipa.ENOTFOUND, "", "This server keeps no artifacts."))
			return
		}
		a, f, err := res.ArtifactService.Open(r.Context(), taskID, name)
		if err != nil {
			writeError(w, r, statusOf(err), err)
			return
		}
		defer f.Close()
		h := w.Header()
		ctype := mime.TypeByExtension(path.Ext(a.Name))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		h.Set("Content-Type", ctype)
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.Name}))
		h.Set("ETag", `"`+a.SHA256+`"`)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
		h.Set("Cache-Control", "private, no-cache")
		h.Add("Vary", "Authorization")
		http.ServeContent(w, r, a.Name, a.SavedAt, f)
	})
}

// refuseArtifactDotSegments answers 400 BAD_USER_INPUT to an artifact path
// with a "." or ".." segment ("/artifacts/{id}/../x") before the router
// sees it: the router would clean the path and redirect elsewhere, and a
// client asking for a name outside its task's artifacts must be told no,
// not sent on. Other paths go to next unchanged.
func refuseArtifactDotSegments(next, refuse http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, ArtifactsPath) {
			for _, seg := range strings.Split(r.URL.Path, "/") {
				if seg == "." || seg == ".." {
					refuse.ServeHTTP(w, r)
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// dotSegmentRefusal is the answer of refuseArtifactDotSegments.
func dotSegmentRefusal(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, http.StatusBadRequest, ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument,
		"Not an artifact name: names are letters, digits, '.', '_' and '-', not starting with '.'."))
}

// statusOf is the HTTP status of a coded error.
func statusOf(err error) int {
	switch ipa.ErrorCode(err) {
	case ipa.EINVALID:
		return http.StatusBadRequest
	case ipa.ENOTFOUND:
		return http.StatusNotFound
	case ipa.EUNAUTHENTICATED:
		return http.StatusUnauthorized
	case ipa.EFORBIDDEN:
		return http.StatusForbidden
	case ipa.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
