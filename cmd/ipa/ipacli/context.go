package ipacli

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/ipa-dev/ipa/internal/client"
)

// cliConfig is the CLI's own file: named contexts, each a server and its
// token, and the one in use. It holds tokens, so it is written mode 0600 in
// a directory of mode 0700.
type cliConfig struct {
	Current  string                 `yaml:"current,omitempty"`
	Contexts map[string]*cliContext `yaml:"contexts,omitempty"`
}

type cliContext struct {
	Server string `yaml:"server"`
	Token  string `yaml:"token,omitempty"`
}

// configPath is where the CLI's config lives: IPA_CONFIG, or
// os.UserConfigDir()/ipa/config ($XDG_CONFIG_HOME or ~/.config on Linux,
// ~/Library/Application Support on macOS).
func configPath() (string, error) {
	if p := os.Getenv("IPA_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no configuration directory: %w (set IPA_CONFIG)", err)
	}
	return filepath.Join(dir, "ipa", "config"), nil
}

// loadConfig reads the config; a missing file is an empty config.
func loadConfig() (*cliConfig, string, error) {
	path, err := configPath()
	if err != nil {
		return nil, "", err
	}
	cfg := &cliConfig{}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, path, nil
	}
	if err != nil {
		return nil, path, err
	}
	if err := yaml.Unmarshal(b, cfg); err != nil {
		return nil, path, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, path, nil
}

// save writes the config through a private temporary file renamed into
// place, so a reader never sees half of it and the token is never readable
// by others, not even for a moment.
func (c *cliConfig) save(path string) error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".config-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func newContextCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "context",
		Short: "Name servers and their tokens, and pick the one ipa task talks to",
		Long: `A context is a named server URL and its token, kept in the CLI's config file
(IPA_CONFIG, default: the user configuration directory's ipa/config, e.g.
~/.config/ipa/config; mode 0600, as it holds tokens).

ipa task uses the current context (or --context NAME / IPA_CONTEXT) when
neither --server nor IPA_SERVER is given; --token or IPA_TOKEN still wins over
the context's token. A server given on the command line never gets a
context's token.`,
		Example: `  ipa context add prod --server https://ipa.example.com --token-stdin < prod.token
  ipa context add local --server http://127.0.0.1:8080
  ipa context use prod
  ipa context list
  ipa task list                 # talks to prod
  ipa task list --context local`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: ExitUsage, err: err}
	})
	cmd.AddCommand(newContextAddCommand(), newContextUseCommand(), newContextListCommand(), newContextRemoveCommand())
	return cmd
}

func newContextAddCommand() *cobra.Command {
	var server, token string
	var tokenStdin, use bool
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Add or replace a context",
		Long: `Adds a context (or replaces the one of that name). The first context added
becomes the current one; --use makes this one current.`,
		Example: `  ipa context add prod --server https://ipa.example.com --token-stdin < prod.token
  IPA_TOKEN=… ipa context add staging --server https://staging.example.com:8080 --use`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if strings.TrimSpace(name) == "" || strings.ContainsAny(name, "\n\r\t") {
				return usageError("a context name is needed (one line, not blank)")
			}
			if server == "" {
				return usageError("--server is required")
			}
			if _, err := client.Endpoint(server); err != nil {
				return usageError("--server: %v", err)
			}
			switch {
			case tokenStdin && cmd.Flags().Changed("token"):
				return usageError("give the token with --token or --token-stdin, not both")
			case tokenStdin:
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && line == "" {
					return usageError("--token-stdin: no token on standard input")
				}
				token = strings.TrimSpace(line)
			case !cmd.Flags().Changed("token"):
				token = os.Getenv("IPA_TOKEN")
			}
			cfg, path, err := loadConfig()
			if err != nil {
				return err
			}
			if cfg.Contexts == nil {
				cfg.Contexts = map[string]*cliContext{}
			}
			cfg.Contexts[name] = &cliContext{Server: server, Token: token}
			if use || cfg.Current == "" {
				cfg.Current = name
			}
			if err := cfg.save(path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "context %q saved in %s", name, path)
			if cfg.Current == name {
				fmt.Fprint(cmd.OutOrStdout(), " (current)")
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "server URL (or host:port), required")
	f.StringVar(&token, "token", "", "API token (default: IPA_TOKEN; prefer --token-stdin, as arguments show in ps)")
	f.BoolVar(&tokenStdin, "token-stdin", false, "read the token from the first line of standard input")
	f.BoolVar(&use, "use", false, "make it the current context")
	return cmd
}

func newContextUseCommand() *cobra.Command {
	return &cobra.Command{
		Use:               "use NAME",
		Short:             "Make a context the current one",
		Example:           `  ipa context use prod`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: contextCompletion,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, path, err := loadConfig()
			if err != nil {
				return err
			}
			if cfg.Contexts[args[0]] == nil {
				return unknownContext(cfg, args[0])
			}
			cfg.Current = args[0]
			if err := cfg.save(path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "current context: %s (%s)\n", args[0], cfg.Contexts[args[0]].Server)
			return nil
		},
	}
}

func newContextListCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the contexts; * marks the current one",
		Example: `  ipa context list`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadConfig()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "CURRENT\tNAME\tSERVER\tTOKEN")
			for _, name := range slices.Sorted(mapKeys(cfg.Contexts)) {
				c := cfg.Contexts[name]
				cur, tok := "", "none"
				if name == cfg.Current {
					cur = "*"
				}
				if c.Token != "" {
					tok = "set" // never printed
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", cur, name, c.Server, tok)
			}
			return w.Flush()
		},
	}
}

func newContextRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use:               "remove NAME",
		Aliases:           []string{"rm", "delete"},
		Short:             "Remove a context (and its token) from the config",
		Example:           `  ipa context remove staging`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: contextCompletion,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, path, err := loadConfig()
			if err != nil {
				return err
			}
			if cfg.Contexts[args[0]] == nil {
				return unknownContext(cfg, args[0])
			}
			delete(cfg.Contexts, args[0])
			if cfg.Current == args[0] {
				cfg.Current = ""
			}
			if err := cfg.save(path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "context %q removed\n", args[0])
			return nil
		},
	}
}

func unknownContext(cfg *cliConfig, name string) error {
	names := slices.Sorted(mapKeys(cfg.Contexts))
	if len(names) == 0 {
		return usageError("no context %q: there are none yet (ipa context add NAME --server URL)", name)
	}
	return usageError("no context %q; the contexts are: %s", name, strings.Join(names, ", "))
}

func contextCompletion(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	cfg, _, err := loadConfig()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return slices.Sorted(mapKeys(cfg.Contexts)), cobra.ShellCompDirectiveNoFileComp
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// endpoint is the server and token ipa task talks to: --server/IPA_SERVER
// and --token/IPA_TOKEN when given, else the chosen context's (--context,
// IPA_CONTEXT, or the current one), else the defaults. A server named on the
// command line or in the environment never gets a context's token, unless
// the context is named explicitly too.
func (o *taskOptions) endpoint() (server, token string, err error) {
	server, token = o.server, o.token
	serverSet := o.flags.Lookup("server").Changed || os.Getenv("IPA_SERVER") != ""
	tokenSet := o.flags.Lookup("token").Changed || os.Getenv("IPA_TOKEN") != ""
	explicit := o.context != ""
	if serverSet && !explicit {
		return server, token, nil
	}
	cfg, path, err := loadConfig()
	if err != nil {
		return "", "", err
	}
	name := o.context
	if name == "" {
		name = cfg.Current
	}
	if name == "" {
		return server, token, nil
	}
	c := cfg.Contexts[name]
	if c == nil {
		if explicit {
			return "", "", unknownContext(cfg, name)
		}
		return "", "", usageError("the current context %q is not in %s: ipa context use NAME", name, path)
	}
	if !serverSet {
		server = c.Server
	}
	if !tokenSet {
		token = c.Token
	}
	return server, token, nil
}
