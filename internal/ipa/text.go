package ipa

import (
	"unicode"
	"unicode/utf8"
)

// ReasonInvalidText refines EINVALID: text that is not valid UTF-8 or holds
// a control character where none is allowed.
const ReasonInvalidText = "INVALID_TEXT"

// CheckLine checks single-line text (titles, labels, reasons, notes, keys,
// names): valid UTF-8 and no control character at all — no C0 control (tab
// and newline included), no DEL, no C1 control. Text is refused, never
// rewritten: a terminal escape stored in a title would reach every console
// and log that shows it, and a silently replaced byte is data lost. Returns
// EINVALID with reason INVALID_TEXT naming field and what is wrong, never the
// text itself.
func CheckLine(field, s string) error { return checkText(field, s, false) }

// CheckMultiline checks multi-line text (descriptions): as CheckLine, but
// tab, newline and carriage return are allowed.
func CheckMultiline(field, s string) error { return checkText(field, s, true) }

func checkText(field, s string, multiline bool) error {
	n := 0
	for i, r := range s {
		n++
		if r == utf8.RuneError {
			if _, w := utf8.DecodeRuneInString(s[i:]); w == 1 {
				return Errorf(EINVALID, ReasonInvalidText, "%s is not valid UTF-8 (at character %d).", field, n)
			}
			continue // a real U+FFFD, sent as such
		}
		if !unicode.IsControl(r) {
			continue
		}
		if multiline && (r == '\t' || r == '\n' || r == '\r') {
			continue
		}
		if multiline {
			return Errorf(EINVALID, ReasonInvalidText,
				"%s contains the control character U+%04X (at character %d); only tab, newline and carriage return are allowed.", field, r, n)
		}
		return Errorf(EINVALID, ReasonInvalidText,
			"%s contains the control character U+%04X (at character %d); single-line text allows none, tab and newline included.", field, r, n)
	}
	return nil
}
