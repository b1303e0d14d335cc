package ipa_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/ipa-dev/ipa/internal/ipa"
)

func FuzzNormalizeTitle(f *testing.F) {
	for _, s := range []string{
		"",
		" ",
		"   \t\n\r\v\f ",
		"\u00a0\u2003\u3000", // Unicode spaces only
		"a",
		"  padded  ",
		strings.Repeat("é", ipa.MaxTitleChars),
		strings.Repeat("é", ipa.MaxTitleChars+1),
		strings.Repeat("😀", ipa.MaxTitleChars),
		strings.Repeat("😀", ipa.MaxTitleChars+1),
		" " + strings.Repeat("日", ipa.MaxTitleChars) + " ",
		strings.Repeat("a", ipa.MaxTitleChars*4),
		"e\u0301", // e + combining acute: two characters
		strings.Repeat("e\u0301", 128),
		"\xff\xfe",
		"ok \xc3",
		"\x00",
		"nul\x00inside",
		"\u200b", // zero-width space: not whitespace to TrimSpace
		"%_\\'\";--",
		"esc \x1b[31m red",
		"bell\a",
		"\x01",
		"tab\tinside",
		"trailing newline\n",
		"del\x7f",
		"c1 \u0085",
		"replacement \ufffd sent as such",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ipa.NormalizeTitle(in)
		trimmed := strings.TrimSpace(in)
		blank := trimmed == ""
		badText := !utf8.ValidString(trimmed) || strings.ContainsFunc(trimmed, unicode.IsControl)
		if err != nil {
			if got != "" {
				t.Fatalf("NormalizeTitle(%q) returned %q with an error", in, got)
			}
			if ipa.ErrorCode(err) != ipa.EINVALID {
				t.Fatalf("NormalizeTitle(%q): error %v is not BAD_USER_INPUT", in, err)
			}
			switch ipa.ErrorReason(err) {
			case ipa.ReasonInvalidTitle:
				tooLong := utf8.RuneCountInString(trimmed) > ipa.MaxTitleChars
				if !blank && !tooLong {
					t.Fatalf("NormalizeTitle(%q) refused as INVALID_TITLE a title neither blank nor too long: %v", in, err)
				}
			case ipa.ReasonInvalidText:
				if blank || !badText {
					t.Fatalf("NormalizeTitle(%q) refused as INVALID_TEXT a title that is blank or good text: %v", in, err)
				}
			default:
				t.Fatalf("NormalizeTitle(%q): reason of %v is neither INVALID_TITLE nor INVALID_TEXT", in, err)
			}
			return
		}
		if badText {
			t.Fatalf("NormalizeTitle(%q) accepted invalid UTF-8 or a control character", in)
		}
		if got != trimmed {
			t.Fatalf("NormalizeTitle(%q) = %q, want it trimmed: %q", in, got, trimmed)
		}
		if !utf8.ValidString(got) {
			t.Fatalf("NormalizeTitle(%q) accepted invalid UTF-8", in)
		}
		if n := utf8.RuneCountInString(got); n < 1 || n > ipa.MaxTitleChars {
			t.Fatalf("NormalizeTitle(%q) accepted %d characters", in, n)
		}
		if strings.TrimSpace(got) != got {
			t.Fatalf("NormalizeTitle(%q) = %q keeps surrounding space", in, got)
		}
		// Normalizing is idempotent.
		again, err := ipa.NormalizeTitle(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeTitle(%q) = %q, %v; want %q unchanged", got, again, err, got)
		}
	})
}
