package rawtext_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ipa-dev/ipa/internal/rawtext"
)

func TestJSON(t *testing.T) {
	good := []string{
		`{"title": "plain"}`,
		`{"title": "\u00e9\u65e5"}`,
		`{"title": "\ud83d\ude00"}`, // a pair: one emoji
		`{"title": "\uD83D\uDE00"}`,
		`{"title": "\\ud800"}`, // an escaped backslash, then text
		`{"title": "\\\\\ud83d\ude00"}`,
		`{"title": "\ufffd"}`, // U+FFFD sent as such
		`{"title": "\u0000"}`, // NUL is valid JSON text; the domain refuses it
		"{\"title\": \"日本\"}",
	}
	for _, s := range good {
		require.NoError(t, rawtext.JSON([]byte(s)), s)
	}
	bad := []string{
		"{\"title\": \"\xff\"}",
		"{\"title\": \"ok \xc3\"}",
		"{\"title\": \"\xed\xa0\x80\"}", // a surrogate encoded in UTF-8
		`{"title": "\ud800"}`,
		`{"title": "\udc00"}`,
		`{"title": "\ud800x"}`,
		`{"title": "\ud800\u0041"}`,
		`{"title": "\ud800\ud800"}`,
		`{"title": "\ude00\ud83d"}`, // the pair the wrong way round
		`{"title": "\\\ud800"}`,     // escaped backslash, then the lone half
		`{"variables": {"t": "a\uDBFF"}}`,
	}
	for _, s := range bad {
		require.Error(t, rawtext.JSON([]byte(s)), s)
	}
	// What encoding/json does with the bad ones: U+FFFD, silently. That
	// is why the check runs before it.
	var v map[string]string
	require.NoError(t, json.Unmarshal([]byte(`{"title": "\ud800"}`), &v))
	require.Equal(t, "\ufffd", v["title"])
}

func TestGraphQL(t *testing.T) {
	good := []string{
		`{ viewer { id } }`,
		`mutation { createTask(input: {title: "\u00e9 \ud83d\ude00 \u{1F600}"}) { task { id } } }`,
		`mutation { createTask(input: {title: "\\ud800"}) { task { id } } }`,
		`mutation { createTask(input: {title: """\ud800 is text in a block string"""}) { task { id } } }`,
		`# a comment \ud800
		{ viewer { id } }`,
		`{ task(id: "\u`, // does not lex: the parser refuses it
	}
	for _, q := range good {
		require.NoError(t, rawtext.GraphQL(q), q)
	}
	bad := []string{
		`mutation { createTask(input: {title: "\ud800"}) { task { id } } }`,
		`mutation { createTask(input: {title: "日本 \uDC00"}) { task { id } } }`,
		`mutation { cancelTask(taskId: "x", reason: "a\ud83d") { task { id } } }`,
		"{ task(id: \"\xff\") { id } }",
	}
	for _, q := range bad {
		require.Error(t, rawtext.GraphQL(q), q)
	}
}
