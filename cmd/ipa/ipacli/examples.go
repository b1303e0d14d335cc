package ipacli

import "github.com/spf13/cobra"

// adminExamples are the Examples sections of the server-side commands,
// keyed by command path; the commands' own files set none.
var adminExamples = map[string]string{
	"ipa serve": `  ipa serve                                          # 127.0.0.1:8080, sqlite://./ipa.db
  ipa serve --database sqlite:///var/lib/ipa/ipa.db --create-dirs
  IPA_DATABASE_URL=postgres://ipa@db:5432/ipa ipa serve --addr 0.0.0.0:8080 --auth required
  ipa serve --exec=false --plugin-dir ./plugins --plugin-sha256-file ./plugins.sha256`,
	"ipa migrate":   `  ipa migrate --database postgres://ipa@db:5432/ipa`,
	"ipa reproject": "  ipa reproject --check\n  ipa reproject",
	"ipa prune":     "  ipa prune --closed-before 30d --dry-run\n  ipa prune --closed-before 90d",
	"ipa backup":    `  ipa backup --to /backups/ipa-$(date +%F).db`,
	"ipa restore":   `  ipa restore --from /backups/ipa-2026-01-31.db`,
	"ipa token create": `  ipa token create --actor alice --role operator
  token=$(ipa token create --actor ci --role viewer | tail -n1)`,
	"ipa token list":        `  ipa token list`,
	"ipa token revoke":      `  ipa token revoke 3f2a9c`,
	"ipa token reset-local": `  ipa token reset-local`,
	"ipa version":           "  ipa version\n  ipa --version",
}

// addExamples sets the Examples section of every command under root that
// has none and an entry in adminExamples.
func addExamples(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if ex, ok := adminExamples[c.CommandPath()]; ok && c.Example == "" {
			c.Example = ex
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
