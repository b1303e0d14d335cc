// Package rawtext finds text that decoding would silently rewrite, in the
// raw bytes of a request, before anything decodes them.
//
// Go's encoding/json replaces invalid UTF-8 and a \u escape of a lone UTF-16
// surrogate (\ud800 without its pair) with U+FFFD, and gqlparser's lexer does
// the same with a lone surrogate escape in a GraphQL string literal. After
// decoding, a replaced character cannot be told from a U+FFFD the client
// really sent, so text would be stored altered without anyone knowing. The
// checks here run on what the client sent, so such a request is refused
// instead (BAD_USER_INPUT, reason INVALID_TEXT).
package rawtext

import (
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/lexer"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// invalid is the refusal: BAD_USER_INPUT, reason INVALID_TEXT.
func invalid(format string, args ...any) error {
	return ipa.Errorf(ipa.EINVALID, ipa.ReasonInvalidText, format+" Text is refused, never altered.", args...)
}

// JSON reports, as EINVALID/INVALID_TEXT, JSON text that is not
// valid UTF-8 or holds a \u escape of a lone surrogate. It does not check
// that b is JSON: the decoder does that next, and a backslash outside a
// string is a syntax error there anyway, so every backslash seen here is
// read as an escape.
func JSON(b []byte) error {
	if !utf8.Valid(b) {
		return invalid("The request is not valid UTF-8.")
	}
	return escapes(string(b), "JSON")
}

// String is JSON for one string that carries JSON (a GET request's
// variables or extensions parameter).
func String(s string) error {
	if !utf8.ValidString(s) {
		return invalid("The request is not valid UTF-8.")
	}
	return escapes(s, "JSON")
}

// GraphQL reports a GraphQL document that is not valid UTF-8 or whose string
// literals hold a \u escape of a lone surrogate. Block strings have no
// escapes, and a document that does not lex is left to the parser, which
// refuses it.
func GraphQL(query string) error {
	if !utf8.ValidString(query) {
		return invalid("The query is not valid UTF-8.")
	}
	if !strings.Contains(query, `\u`) {
		return nil // no escape at all: the common case costs one scan
	}
	var runes []rune // token positions count runes
	lx := lexer.New(&ast.Source{Input: query})
	for {
		tok, err := lx.ReadToken()
		if err != nil || tok.Kind == lexer.EOF {
			return nil
		}
		if tok.Kind != lexer.String {
			continue
		}
		if runes == nil {
			runes = []rune(query)
		}
		if tok.Pos.Start < 0 || tok.Pos.End > len(runes) || tok.Pos.Start > tok.Pos.End {
			continue
		}
		if err := escapes(string(runes[tok.Pos.Start:tok.Pos.End]), "GraphQL string"); err != nil {
			return err
		}
	}
}

// escapes finds a \uXXXX escape of a surrogate that is not a high surrogate
// directly followed by an escaped low one.
func escapes(s, what string) error {
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			continue
		}
		if s[i+1] != 'u' {
			i++ // an escaped character, maybe a backslash: skip it
			continue
		}
		r, ok := hex4(s, i+2)
		if !ok {
			i++
			continue
		}
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			if i+12 <= len(s) && s[i+6] == '\\' && s[i+7] == 'u' {
				if r2, ok := hex4(s, i+8); ok && r2 >= 0xDC00 && r2 <= 0xDFFF && utf16.DecodeRune(r, r2) != utf8.RuneError {
					i += 11
					continue
				}
			}
			return invalid("The %s escape \\u%04X is half of a UTF-16 surrogate pair without its other half: not a character.", what, r)
		case r >= 0xDC00 && r <= 0xDFFF:
			return invalid("The %s escape \\u%04X is half of a UTF-16 surrogate pair without its other half: not a character.", what, r)
		}
		i += 5
	}
	return nil
}

func hex4(s string, at int) (rune, bool) {
	if at+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[at : at+4]) {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
