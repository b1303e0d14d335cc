package httpserver

import (
	"mime"
	"net/http"
	"strings"
)

// The two response media types of the GraphQL-over-HTTP spec.
const (
	mediaJSON            = "application/json"
	mediaGraphQLResponse = "application/graphql-response+json"
)

// responseMediaType is the media type a /graphql answer to r is written in,
// chosen from its Accept header the way gqlgen's transports choose it (first
// acceptable entry wins; none, or a wildcard, means application/json), so an
// error written outside gqlgen is typed like the success would have been.
func responseMediaType(r *http.Request) string {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return mediaJSON
	}
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "*/*", "application/*", mediaJSON:
			return mediaJSON
		case mediaGraphQLResponse:
			return mediaGraphQLResponse
		}
	}
	return mediaJSON
}

// requestErrorStatus is the status of a request error — a document that
// does not parse or validate, variables that do not coerce; gqlgen answers
// those 422 — under the GraphQL-over-HTTP spec: 200 for application/json,
// whose clients read errors from the body (older clients treat any 4xx as a
// transport failure), and 400 for application/graphql-response+json.
func requestErrorStatus(status int, mediaType string) int {
	if status != http.StatusUnprocessableEntity && status != http.StatusBadRequest {
		return status
	}
	if mediaType == mediaGraphQLResponse {
		return http.StatusBadRequest
	}
	if status == http.StatusUnprocessableEntity {
		return http.StatusOK
	}
	return status
}
