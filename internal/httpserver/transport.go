package httpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"strconv"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Codes of refusals made by the HTTP layer itself, before any GraphQL runs.
const (
	CodeMethodNotAllowed     = "METHOD_NOT_ALLOWED"     // 405: not GET, POST or OPTIONS; or a mutation over GET
	CodeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE" // 415: a POST whose Content-Type is not application/json
	CodeRequestTimeout       = "REQUEST_TIMEOUT"        // 408: the body did not arrive in time
	CodeRateLimited          = "RATE_LIMITED"           // 429: over --rate-limit; Retry-After says when to retry
)

// allowedMethods are the methods /graphql answers.
const allowedMethods = "GET, POST, OPTIONS"

// withTransportGate refuses what no transport serves — a wrong method, a POST
// that is not JSON — with a coded error, before gqlgen, whose own refusals
// carry no code. What passes and is answered as one response (not a stream)
// goes through a codedWriter, so that gqlgen's remaining uncoded errors (a
// mutation over GET, undecodable GET variables) get a code too.
func withTransportGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case isWebSocket(r):
			next.ServeHTTP(w, r)
			return
		case r.Method == http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		case r.Method == http.MethodPost:
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				w.Header().Set("Accept-Post", "application/json")
				writeError(w, r, http.StatusUnsupportedMediaType, ipa.Errorf(CodeUnsupportedMediaType, "",
					"Send the request as Content-Type: application/json."))
				return
			}
			if isSSE(r) {
				next.ServeHTTP(w, r)
				return
			}
		case r.Method == http.MethodGet:
		default:
			w.Header().Set("Allow", allowedMethods)
			writeError(w, r, http.StatusMethodNotAllowed, ipa.Errorf(CodeMethodNotAllowed, "",
				"Method %s is not allowed: use POST (or GET for queries).", r.Method))
			return
		}
		cw := &codedWriter{ResponseWriter: w, r: r}
		next.ServeHTTP(cw, r)
		cw.finish()
	})
}

// maxErrorBody caps what a codedWriter holds of an error response; gqlgen's
// are a few hundred bytes.
const maxErrorBody = 64 << 10

// codedWriter holds back a response with an error status until the handler
// is done, then makes sure every error in it has extensions.code. Responses
// below 400 pass straight through.
type codedWriter struct {
	http.ResponseWriter
	r      *http.Request
	status int // the held-back error status; 0 while none
	sent   bool
	buf    bytes.Buffer
}

func (c *codedWriter) WriteHeader(status int) {
	if c.sent || c.status != 0 {
		return
	}
	if status >= 400 {
		c.status = status
		return
	}
	c.sent = true
	c.ResponseWriter.WriteHeader(status)
}

func (c *codedWriter) Write(p []byte) (int, error) {
	if c.status != 0 {
		if room := maxErrorBody - c.buf.Len(); room > 0 {
			c.buf.Write(p[:min(len(p), room)])
		}
		return len(p), nil
	}
	c.sent = true
	return c.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (c *codedWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// finish writes a held-back error response, coding its uncoded errors.
func (c *codedWriter) finish() {
	if c.status == 0 {
		return
	}
	status := c.status
	var body map[string]any
	if json.Unmarshal(c.buf.Bytes(), &body) != nil || body == nil {
		body = map[string]any{}
	}
	errs, _ := body["errors"].([]any)
	if len(errs) == 0 {
		errs = []any{map[string]any{"message": http.StatusText(status)}}
	}
	if status == http.StatusNotAcceptable && c.r.Method == http.MethodGet {
		// gqlgen's answer to a mutation or subscription over GET. The
		// GraphQL-over-HTTP spec asks for 405 with Allow: POST.
		status = http.StatusMethodNotAllowed
		c.Header().Set("Allow", "POST")
		errs = []any{map[string]any{"message": "Only queries may be sent with GET: send mutations and subscriptions with POST."}}
	}
	m := metricsFrom(c.r.Context())
	for i, raw := range errs {
		e, ok := raw.(map[string]any)
		if !ok {
			e = map[string]any{"message": http.StatusText(status)}
			errs[i] = e
		}
		ext, _ := e["extensions"].(map[string]any)
		if ext == nil {
			ext = map[string]any{}
			e["extensions"] = ext
		}
		if _, ok := ext["code"]; !ok {
			code, reason := codeForStatus(status)
			ext["code"] = code
			if reason != "" {
				ext["reason"] = reason
			}
			m.countError(code)
		}
		if s, _ := e["message"].(string); s == "" {
			e["message"] = http.StatusText(status)
		}
		ext["correlationId"] = ipa.CorrelationID(c.r.Context())
	}
	body["errors"] = errs
	// A request error ends before execution, so it has no data entry (the
	// GraphQL spec), and its status follows the negotiated media type.
	if d, ok := body["data"]; ok && d == nil {
		delete(body, "data")
	}
	mt := responseMediaType(c.r)
	if status == http.StatusUnprocessableEntity && len(errs) == 1 && errorMessage(errs[0]) == "no operation provided" {
		// gqlgen's answer to a request without a query: malformed
		// parameters, not a document error, so 400 whatever the media type.
		status = http.StatusBadRequest
	}
	status = requestErrorStatus(status, mt)
	out, _ := json.Marshal(body)
	h := c.Header()
	h.Set("Content-Type", mt)
	h.Set("Content-Length", strconv.Itoa(len(out)))
	c.ResponseWriter.WriteHeader(status)
	_, _ = c.ResponseWriter.Write(out)
}

func errorMessage(e any) string {
	m, _ := e.(map[string]any)
	s, _ := m["message"].(string)
	return s
}

// codeForStatus is the code of an error that came with only an HTTP status.
func codeForStatus(status int) (code, reason string) {
	switch status {
	case http.StatusUnauthorized:
		return ipa.EUNAUTHENTICATED, ""
	case http.StatusForbidden:
		return ipa.EFORBIDDEN, ""
	case http.StatusNotFound:
		return ipa.ENOTFOUND, ""
	case http.StatusMethodNotAllowed:
		return CodeMethodNotAllowed, ""
	case http.StatusRequestTimeout:
		return CodeRequestTimeout, ""
	case http.StatusUnsupportedMediaType:
		return CodeUnsupportedMediaType, ""
	case http.StatusTooManyRequests:
		return CodeRateLimited, ""
	case http.StatusServiceUnavailable:
		return ipa.EUNAVAILABLE, ""
	}
	if status >= 500 {
		return ipa.EINTERNAL, ""
	}
	return ipa.EINVALID, ipa.ReasonInvalidArgument
}

type metricsKey struct{}

// withErrorMetrics lets writeError and codedWriter count the errors they
// write, like the error presenter counts GraphQL's.
func withErrorMetrics(m *metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), metricsKey{}, m)))
	})
}

// metricsFrom returns the request's metrics, nil (counting nothing) when none.
func metricsFrom(ctx context.Context) *metrics {
	m, _ := ctx.Value(metricsKey{}).(*metrics)
	return m
}
