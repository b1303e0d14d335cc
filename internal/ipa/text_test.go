package ipa_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/ipa"
)

func TestCheckText(t *testing.T) {
	good := []string{"", "plain", "é 日 😀", "a\u00a0b", "\ufffd sent as such", "zero\u200bwidth"}
	badAnywhere := map[string]string{
		"InvalidByte":  "ok \xff",
		"Truncated":    "ok \xc3",
		"Surrogate":    "\xed\xa0\x80", // U+D800 encoded: not UTF-8
		"NUL":          "a\x00b",
		"ESC":          "\x1b[31mred",
		"BEL":          "ring\a",
		"SOH":          "\x01",
		"DEL":          "del\x7f",
		"C1":           "next line\u0085",
		"VerticalTab":  "v\vt",
		"FormFeed":     "f\ft",
		"Backspace":    "b\bs",
		"EscAfterText": "a title \x1b]0;pwned\x07",
	}
	lineOnly := map[string]string{"Tab": "a\tb", "Newline": "a\nb", "CR": "a\rb", "CRLF": "a\r\nb"}

	for _, s := range good {
		require.NoError(t, ipa.CheckLine("The title", s), "%q", s)
		require.NoError(t, ipa.CheckMultiline("The description", s), "%q", s)
	}
	for name, s := range badAnywhere {
		for _, check := range []func(string, string) error{ipa.CheckLine, ipa.CheckMultiline} {
			err := check("The title", s)
			require.Error(t, err, name)
			require.Equal(t, ipa.EINVALID, ipa.ErrorCode(err), name)
			require.Equal(t, ipa.ReasonInvalidText, ipa.ErrorReason(err), name)
			require.Contains(t, err.Error(), "The title", "the message names the field")
			require.NotContains(t, err.Error(), s, "the message never repeats the text")
		}
	}
	for name, s := range lineOnly {
		require.NoError(t, ipa.CheckMultiline("The description", s), name)
		err := ipa.CheckLine("The note", s)
		require.Equal(t, ipa.ReasonInvalidText, ipa.ErrorReason(err), name)
	}
}

func TestLabelsRefuseControlText(t *testing.T) {
	for name, l := range map[string]ipa.Labels{
		"KeyESC":       {"te\x1bam": "x"},
		"ValueBEL":     {"team": "a\a"},
		"ValueInvalid": {"team": "\xff"},
	} {
		err := ipa.ValidateLabels(l)
		require.Equal(t, ipa.ReasonInvalidText, ipa.ErrorReason(err), name)
	}
	// Printable but outside the label alphabet: still a format error.
	require.Equal(t, ipa.ReasonInvalidLabels, ipa.ErrorReason(ipa.ValidateLabels(ipa.Labels{"team": "a b"})))
}
