package ipacli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ipa-dev/ipa/internal/client"
	"github.com/ipa-dev/ipa/internal/ipa"
)

// maxPrefixCandidates is how many matching tasks an ambiguous prefix lists.
const maxPrefixCandidates = 10

// resolveID turns what a person typed for a task id into the task's id: a
// whole id is used as it is; anything shorter is a prefix, which must match
// exactly one task (archived ones included). A prefix matching none is
// NOT_FOUND; one matching several is a usage error listing them.
func resolveID(ctx context.Context, c *client.Client, arg string) (string, error) {
	if len(arg) == 36 {
		return arg, nil
	}
	if arg == "" {
		return "", usageError("a task id or the start of one is needed")
	}
	if _, _, ok := ipa.IDPrefixRange(arg); !ok {
		return "", notFound(arg) // no id starts so
	}
	// Archived tasks are hidden from a plain list; ask for both halves.
	data, err := c.Do(ctx, docResolveID,
		map[string]any{"p": arg, "n": maxPrefixCandidates + 1})
	if err != nil {
		return "", err
	}
	type page struct {
		Edges []struct{ Node struct{ ID, Title string } }
	}
	var out struct{ Open, Archived page }
	if err := json.Unmarshal(data, &out); err != nil {
		return "", err
	}
	matches := append(out.Open.Edges, out.Archived.Edges...)
	switch len(matches) {
	case 0:
		return "", notFound(arg)
	case 1:
		return matches[0].Node.ID, nil
	}
	var b strings.Builder
	more := ""
	if len(matches) > maxPrefixCandidates {
		matches, more = matches[:maxPrefixCandidates], "\n  …"
	}
	for _, m := range matches {
		fmt.Fprintf(&b, "\n  %s  %s", m.Node.ID, cut(oneLine(m.Node.Title), 60))
	}
	return "", usageError("%q is the start of several task ids; give more of it:%s%s", arg, b.String(), more)
}
