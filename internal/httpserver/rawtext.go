package httpserver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/rawtext"
)

// Text that decoding would silently alter — invalid UTF-8, a \u escape of
// half a surrogate pair — is refused with BAD_USER_INPUT/INVALID_TEXT (see
// package rawtext): the JSON of a POST or SSE body and of GET parameters
// here, before gqlgen decodes them; the GraphQL document of every
// transport, WebSocket included, in textCheck; WebSocket messages in
// package wstransport. Control characters are valid text: the domain refuses them
// field by field (ipa.CheckLine).

// withRawText refuses a request whose body or parameters hold such text,
// with 400. It runs after withBodyLimit, which has read the body into
// memory.
func withRawText(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isWebSocket(r) || r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		var err error
		if r.Body != nil && r.Body != http.NoBody {
			var body []byte
			body, err = io.ReadAll(r.Body)
			if err != nil {
				writeError(w, r, http.StatusBadRequest,
					ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidArgument, "The request body could not be read."))
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			err = rawtext.JSON(body)
		}
		if err == nil && r.URL.RawQuery != "" {
			for k, vs := range r.URL.Query() {
				for _, v := range vs {
					switch k {
					case "query":
						err = errors.Join(err, rawtext.GraphQL(v))
					default: // variables, extensions: JSON; operationName: checked as text
						err = errors.Join(err, rawtext.String(v))
					}
				}
			}
		}
		if err != nil {
			writeError(w, r, http.StatusBadRequest, firstError(err))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// firstError unwraps a join to its first error, whose message is the one
// the client reads.
func firstError(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		if errs := j.Unwrap(); len(errs) > 0 {
			return errs[0]
		}
	}
	return err
}

// textCheck refuses a GraphQL document whose string literals hold a lone
// surrogate escape (or that is not UTF-8), on every transport: gqlparser's
// lexer would turn the escape into U+FFFD.
type textCheck struct{}

var _ interface {
	graphql.OperationParameterMutator
	graphql.HandlerExtension
} = textCheck{}

func (textCheck) ExtensionName() string                          { return "TextCheck" }
func (textCheck) Validate(schema graphql.ExecutableSchema) error { return nil }

func (textCheck) MutateOperationParameters(ctx context.Context, raw *graphql.RawParams) *gqlerror.Error {
	err := rawtext.GraphQL(raw.Query)
	if err == nil {
		return nil
	}
	var e *ipa.Error
	errors.As(err, &e)
	return &gqlerror.Error{Message: e.Message, Extensions: map[string]any{"code": e.Code, "reason": e.Reason}}
}
