package ipa_test

import (
	"strings"
	"testing"
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
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ipa.NormalizeTitle(in)
		trimmed := strings.TrimSpace(in)
		if err != nil {
			if ipa.ErrorCode(err) != ipa.EINVALID || ipa.ErrorReason(err) != ipa.ReasonInvalidTitle {
				t.Fatalf("NormalizeTitle(%q): error %v is not BAD_USER_INPUT/INVALID_TITLE", in, err)
			}
			if got != "" {
				t.Fatalf("NormalizeTitle(%q) returned %q with an error", in, got)
			}
			blank := trimmed == ""
			tooLong := utf8.RuneCountInString(trimmed) > ipa.MaxTitleChars
			invalid := !utf8.ValidString(trimmed)
			if !blank && !tooLong && !invalid {
				t.Fatalf("NormalizeTitle(%q) refused a title that is neither blank, too long nor invalid UTF-8: %v", in, err)
			}
			return
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
